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

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tradestack_model::UnixNanos;
use tradestack_model::codec;

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

/// When appended records reach the disk. In TOML: `"always"`, `"never"`, or
/// an interval such as `"10ms"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FsyncPolicy {
    /// fsync every batch before acknowledging it (group commit): nothing
    /// acknowledged is lost, even on power loss.
    Always,
    /// fsync at most once per interval: an OS crash or power loss may lose
    /// the last interval; a process crash loses nothing (the data is in the
    /// page cache).
    Interval(Duration),
    /// Leave it to the OS.
    Never,
}

impl TryFrom<String> for FsyncPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => humantime::parse_duration(other)
                .map(FsyncPolicy::Interval)
                .map_err(|e| {
                    format!("expected \"always\", \"never\" or an interval like \"10ms\": {e}")
                }),
        }
    }
}

impl From<FsyncPolicy> for String {
    fn from(p: FsyncPolicy) -> String {
        match p {
            FsyncPolicy::Always => "always".into(),
            FsyncPolicy::Never => "never".into(),
            FsyncPolicy::Interval(d) => humantime::format_duration(d).to_string(),
        }
    }
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
    /// The file system failed.
    #[error("journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A record could not be encoded.
    #[error("journal encoding: {0}")]
    Codec(#[from] codec::CodecError),
    /// Sequence numbers have a hole: the journal does not follow the snapshot.
    #[error("journal gap: expected seq {expected}, found {found}")]
    Gap {
        /// Expected.
        expected: u64,
        /// Found.
        found: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The append side of the journal.
pub struct Journal {
    dir: PathBuf,
    policy: FsyncPolicy,
    file: BufWriter<File>,
    path: PathBuf,
    last_sync: Instant,
    last_seq: u64,
    buf: Vec<u8>,
}

const HEADER: usize = 8;
/// Largest record accepted when reading (a guard against a corrupt length).
const MAX_RECORD: u32 = 64 << 20;

impl Journal {
    /// Opens (creating) the journal in `dir`, recovering what is there.
    pub fn open(dir: &Path, policy: FsyncPolicy) -> Result<(Journal, Recovered), JournalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut recovered = Recovered {
            snapshot: newest_snapshot(dir)?,
            ..Recovered::default()
        };
        let after = recovered.snapshot.as_ref().map_or(0, |s| s.seq);
        let mut last_seq = after;
        let segments = segments(dir)?;
        for (i, (_, path)) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let (entries, good_len, file_len) = read_segment(path)?;
            if good_len < file_len {
                if !last {
                    tracing::error!(path = %path.display(), "corrupt record inside an older journal segment; later segments are ignored");
                }
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(good_len).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
                recovered.truncated_bytes += file_len - good_len;
            }
            for e in entries {
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
            if good_len < file_len {
                break;
            }
        }
        let path = match segments.last() {
            Some((_, p)) => p.clone(),
            None => segment_path(dir, last_seq + 1),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(dir)?;
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                policy,
                file: BufWriter::with_capacity(1 << 16, file),
                path,
                last_sync: Instant::now(),
                last_seq,
                buf: Vec::with_capacity(4096),
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
        for e in entries {
            self.buf.clear();
            codec::encode_into(e, &mut self.buf)?;
            let len = self.buf.len() as u32;
            let crc = crc32fast::hash(&self.buf);
            self.file
                .write_all(&len.to_le_bytes())
                .and_then(|()| self.file.write_all(&crc.to_le_bytes()))
                .and_then(|()| self.file.write_all(&self.buf))
                .map_err(io_err(&self.path))?;
            self.last_seq = e.seq;
        }
        self.file.flush().map_err(io_err(&self.path))?;
        let due = match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        if !due {
            return Ok(None);
        }
        let started = Instant::now();
        self.file
            .get_ref()
            .sync_data()
            .map_err(io_err(&self.path))?;
        self.last_sync = Instant::now();
        Ok(Some(started.elapsed()))
    }

    /// Writes a snapshot of the state after `seq` (all appended entries up
    /// to it must be in the journal), starts a new segment, and deletes what
    /// no longer needed: snapshots but the newest two, and segments older
    /// than the older of those.
    pub fn snapshot(&mut self, seq: u64, state: &ExchangeState) -> Result<(), JournalError> {
        self.file.flush().map_err(io_err(&self.path))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(io_err(&self.path))?;
        let bytes = codec::encode(&Snapshot {
            seq,
            state: state.clone(),
        })?;
        let path = self.dir.join(format!("snapshot-{seq:020}.bin"));
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&(bytes.len() as u32).to_le_bytes())
                .and_then(|()| f.write_all(&crc32fast::hash(&bytes).to_le_bytes()))
                .and_then(|()| f.write_all(&bytes))
                .and_then(|()| f.sync_all())
                .map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        // New segment for what follows.
        let next = segment_path(&self.dir, seq + 1);
        if next != self.path {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&next)
                .map_err(io_err(&next))?;
            self.file = BufWriter::with_capacity(1 << 16, file);
            self.path = next;
        }
        sync_dir(&self.dir)?;
        // Retention.
        let snaps = snapshots(&self.dir)?;
        if snaps.len() > 2 {
            for (_, p) in &snaps[..snaps.len() - 2] {
                let _ = fs::remove_file(p);
            }
        }
        let keep_from = snaps.len().checked_sub(2).map_or(0, |i| snaps[i].0 + 1);
        for (first, p) in segments(&self.dir)? {
            if first < keep_from && p != self.path {
                let _ = fs::remove_file(&p);
            }
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("journal-{first_seq:020}.log"))
}

/// Files named `<prefix><number><suffix>`, sorted by number.
fn numbered(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(n) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(suffix))
            .and_then(|n| n.parse().ok())
        {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    numbered(dir, "journal-", ".log")
}

fn snapshots(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    numbered(dir, "snapshot-", ".bin")
}

/// The newest snapshot that reads back intact.
fn newest_snapshot(dir: &Path) -> Result<Option<Snapshot>, JournalError> {
    for (_, path) in snapshots(dir)?.into_iter().rev() {
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        match frame(&bytes) {
            Some((payload, _)) => match codec::decode::<Snapshot>(payload) {
                Ok(s) => return Ok(Some(s)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable snapshot skipped")
                }
            },
            None => tracing::warn!(path = %path.display(), "torn snapshot skipped"),
        }
    }
    Ok(None)
}

/// One framed record at the start of `bytes`: its payload and total length.
fn frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let header = bytes.get(..HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(HEADER..HEADER + len as usize)?;
    (crc32fast::hash(payload) == crc).then_some((payload, HEADER + len as usize))
}

/// Every intact record of a segment, the length they span, and the file length.
fn read_segment(path: &Path) -> Result<(Vec<JournalEntry>, u64, u64), JournalError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err(path))?;
    let mut entries = Vec::new();
    let mut at = 0usize;
    while let Some((payload, used)) = frame(&bytes[at..]) {
        match codec::decode::<JournalEntry>(payload) {
            Ok(e) => entries.push(e),
            Err(e) => {
                tracing::warn!(path = %path.display(), offset = at, error = %e, "undecodable journal record; cutting here");
                break;
            }
        }
        at += used;
    }
    Ok((entries, at as u64, bytes.len() as u64))
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}
