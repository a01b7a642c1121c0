//! The command journal and snapshots: what makes an acknowledged order
//! survive `kill -9`.
//!
//! Every command is appended to the journal, with its sequence number and
//! time, before its effects are acknowledged. Records are framed as
//! `length (u32 LE) | crc32 (u32 LE) | payload`, the payload being the
//! versioned binary codec of a [`JournalEntry`]. A crash can leave a torn last
//! record; opening the journal keeps every complete record before it and cuts
//! the rest, which was never acknowledged.
//!
//! Snapshots hold the whole exchange state at a sequence number. Recovery
//! loads the newest valid snapshot and replays the journal after it; because
//! the exchange core is deterministic, that rebuilds books, orders and
//! balances exactly. Journal segments older than the snapshot kept before the
//! newest one are deleted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tradestack_model::UnixNanos;
pub use tradestack_wal::FsyncPolicy;
use tradestack_wal::{Log, WalError};

use crate::engine::{Command, ExchangeState};

/// One journaled command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Position in the exchange's command sequence, from 1, without gaps.
    pub seq: u64,
    /// The time the command was applied at.
    pub ts: UnixNanos,
    /// The command.
    pub cmd: Command,
}

/// A snapshot recovered from disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last sequence number it includes.
    pub seq: u64,
    /// The state after that command.
    pub state: ExchangeState,
}

/// What `open` found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The newest valid snapshot.
    pub snapshot: Option<Snapshot>,
    /// Journal entries after it, in order.
    pub entries: Vec<JournalEntry>,
    /// Bytes cut from a torn or corrupt journal tail.
    pub truncated_bytes: u64,
}

/// Journal errors.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The log or a snapshot file failed.
    #[error("journal {0}")]
    Log(#[from] WalError),
    /// Sequence numbers have a hole: the journal does not follow the snapshot.
    #[error("journal gap: expected seq {expected}, found {found}")]
    Gap {
        /// Expected.
        expected: u64,
        /// Found.
        found: u64,
    },
}

/// The append side of the journal.
pub struct Journal {
    dir: PathBuf,
    log: Log<JournalEntry>,
    last_seq: u64,
}

const PREFIX: &str = "journal";

impl Journal {
    /// Opens (creating) the journal in `dir`, recovering what is there.
    pub fn open(dir: &Path, policy: FsyncPolicy) -> Result<(Journal, Recovered), JournalError> {
        std::fs::create_dir_all(dir).map_err(tradestack_wal::io_err(dir))?;
        let snapshot = newest_snapshot(dir)?;
        let after = snapshot.as_ref().map_or(0, |s| s.seq);
        let (log, opened) = Log::<JournalEntry>::open(dir, PREFIX, policy, after + 1)?;
        let mut recovered = Recovered {
            snapshot,
            entries: Vec::new(),
            truncated_bytes: opened.truncated_bytes,
        };
        let mut last_seq = after;
        for (_, e) in opened.records {
            if e.seq <= after {
                continue;
            }
            if e.seq != last_seq + 1 {
                return Err(JournalError::Gap {
                    expected: last_seq + 1,
                    found: e.seq,
                });
            }
            last_seq = e.seq;
            recovered.entries.push(e);
        }
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                log,
                last_seq,
            },
            recovered,
        ))
    }

    /// The last sequence number written.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Appends a batch and makes it durable per the policy. Returns the time
    /// spent in fsync, if one ran.
    pub fn append(&mut self, entries: &[JournalEntry]) -> Result<Option<Duration>, JournalError> {
        let synced = self.log.append(entries)?;
        if let Some(e) = entries.last() {
            self.last_seq = e.seq;
        }
        Ok(synced)
    }

    /// Writes a snapshot of the state after `seq` (all appended entries up
    /// to it must be in the journal), starts a new segment, and deletes what
    /// no longer needed: snapshots but the newest two, and segments older
    /// than the older of those.
    pub fn snapshot(&mut self, seq: u64, state: &ExchangeState) -> Result<(), JournalError> {
        self.log.rotate(seq + 1)?;
        let path = self.dir.join(format!("snapshot-{seq:020}.bin"));
        tradestack_wal::write_file(
            &path,
            &Snapshot {
                seq,
                state: state.clone(),
            },
        )?;
        // Retention.
        let snaps = snapshots(&self.dir)?;
        if snaps.len() > 2 {
            for (_, p) in &snaps[..snaps.len() - 2] {
                let _ = std::fs::remove_file(p);
            }
        }
        let keep_from = snaps.len().checked_sub(2).map_or(0, |i| snaps[i].0 + 1);
        self.log.remove_before(keep_from)?;
        Ok(())
    }
}

fn snapshots(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    tradestack_wal::numbered(dir, "snapshot-", ".bin")
}

/// The newest snapshot that reads back intact.
fn newest_snapshot(dir: &Path) -> Result<Option<Snapshot>, WalError> {
    for (_, path) in snapshots(dir)?.into_iter().rev() {
        if let Some(s) = tradestack_wal::read_file::<Snapshot>(&path)? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}
