//! The sequencer: one thread that owns the [`Exchange`], journals every
//! command before acknowledging it, and hands the events to whoever listens.
//!
//! Commands arrive on a channel. The thread takes every request waiting (up
//! to a batch limit), stamps the commands with sequence numbers and the
//! clock's time, appends them to the journal in one write and one fsync
//! (group commit), then applies them in order and replies. Reads run on the
//! same thread between commands, so they see a consistent state.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{broadcast, mpsc, oneshot};
use tradestack_kernel::Clock;
use tradestack_model::UnixNanos;

use crate::engine::{Command, Exchange, ExchangeError, ExchangeEvent, Reply};
use crate::journal::{FsyncPolicy, Journal, JournalEntry, JournalError};
use crate::metrics::ExchangeMetrics;
use crate::settings::ExchangeSettings;

/// Sequencer settings.
#[derive(Clone, Debug)]
pub struct SequencerSettings {
    /// Journal and snapshot directory.
    pub dir: PathBuf,
    /// When the journal is fsynced.
    pub fsync: FsyncPolicy,
    /// A snapshot every this many commands.
    pub snapshot_every: u64,
    /// Most commands per group commit.
    pub batch_max: usize,
}

/// The effects of one applied command.
#[derive(Clone, Debug)]
pub struct Applied {
    /// Its journal sequence number.
    pub seq: u64,
    /// Its time.
    pub ts: UnixNanos,
    /// What it did.
    pub events: Vec<ExchangeEvent>,
    /// True while replaying the journal at start: listeners that already
    /// stored these events (idempotently) may skip them.
    pub replayed: bool,
}

/// What a command's caller gets back.
#[derive(Clone, Debug)]
pub struct Executed {
    /// Sequence number.
    pub seq: u64,
    /// The reply, or why nothing changed.
    pub result: Result<Reply, ExchangeError>,
    /// The events.
    pub events: Arc<Applied>,
}

/// The sequencer is gone (shut down, or stopped on a journal failure).
#[derive(Clone, Debug, thiserror::Error)]
#[error("the exchange sequencer is not running")]
pub struct Unavailable;

type Read = Box<dyn FnOnce(&Exchange) + Send>;

enum Request {
    Command(Command, oneshot::Sender<Executed>),
    Read(Read),
}

/// The lossless listener: a channel of applied commands, and the sequence
/// number up to which the listener has made them durable.
pub struct Durable {
    /// Every applied command, replayed ones included.
    pub tx: mpsc::UnboundedSender<Arc<Applied>>,
    /// Set by the listener after it stored everything up to a seq.
    pub stored: Arc<AtomicU64>,
}

/// A cheap handle to the sequencer.
#[derive(Clone)]
pub struct ExchangeHandle {
    tx: mpsc::Sender<Request>,
    events: broadcast::Sender<Arc<Applied>>,
    healthy: Arc<AtomicBool>,
}

impl ExchangeHandle {
    /// Journals and applies a command; resolves once it is durable.
    pub async fn execute(&self, cmd: Command) -> Result<Executed, Unavailable> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Command(cmd, tx))
            .await
            .map_err(|_| Unavailable)?;
        rx.await.map_err(|_| Unavailable)
    }

    /// Runs `f` on the exchange state between commands.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Exchange) -> R + Send + 'static,
    ) -> Result<R, Unavailable> {
        let (tx, rx) = oneshot::channel();
        let job: Read = Box::new(move |ex| {
            let _ = tx.send(f(ex));
        });
        self.tx
            .send(Request::Read(job))
            .await
            .map_err(|_| Unavailable)?;
        rx.await.map_err(|_| Unavailable)
    }

    /// Every applied command's events, for streams (a slow receiver lags and
    /// must resynchronise from a snapshot).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Applied>> {
        self.events.subscribe()
    }

    /// False once the sequencer stopped.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
}

/// What recovery found and did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Sequence number of the snapshot loaded, if any.
    pub snapshot_seq: Option<u64>,
    /// Journal entries replayed after it.
    pub replayed: u64,
    /// Bytes of a torn journal tail that were cut.
    pub truncated_bytes: u64,
}

/// A running sequencer.
pub struct Sequencer {
    /// The handle to send commands with.
    pub handle: ExchangeHandle,
    /// What recovery did at start.
    pub recovery: RecoveryReport,
    /// The thread; ends when every handle is dropped.
    pub thread: std::thread::JoinHandle<()>,
}

impl Sequencer {
    /// Recovers the exchange from the journal in `settings.dir` and starts the
    /// sequencer thread. `durable` receives every applied command's events,
    /// replayed ones included, without loss (an unbounded channel: it is the
    /// path to the state store and the bus); snapshots wait for it.
    pub fn start(
        exchange: ExchangeSettings,
        settings: SequencerSettings,
        clock: Arc<dyn Clock>,
        metrics: ExchangeMetrics,
        durable: Option<Durable>,
    ) -> Result<Sequencer, JournalError> {
        let dir = settings.dir.clone();
        let (mut journal, recovered) = Journal::open(&settings.dir, settings.fsync)?;
        let report = RecoveryReport {
            snapshot_seq: recovered.snapshot.as_ref().map(|s| s.seq),
            replayed: recovered.entries.len() as u64,
            truncated_bytes: recovered.truncated_bytes,
        };
        let mut ex = match recovered.snapshot {
            Some(s) => Exchange::restore(exchange, s.state),
            None => Exchange::new(exchange),
        };
        let mut last_ts = UnixNanos(i64::MIN);
        for e in &recovered.entries {
            let mut events = Vec::new();
            let _ = ex.apply(&e.cmd, e.ts, &mut events);
            last_ts = e.ts;
            if let Some(d) = &durable {
                let _ = d.tx.send(Arc::new(Applied {
                    seq: e.seq,
                    ts: e.ts,
                    events,
                    replayed: true,
                }));
            }
        }
        let mut last_snapshot = report.snapshot_seq.unwrap_or(0);
        let (tx, mut rx) = mpsc::channel::<Request>(settings.batch_max.max(1) * 4);
        let (events, _) = broadcast::channel(4096);
        let healthy = Arc::new(AtomicBool::new(true));
        let handle = ExchangeHandle {
            tx,
            events: events.clone(),
            healthy: healthy.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("exchange-sequencer".into())
            .spawn(move || {
                let mut batch: Vec<Request> = Vec::with_capacity(settings.batch_max);
                let mut entries: Vec<JournalEntry> = Vec::with_capacity(settings.batch_max);
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < settings.batch_max {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    entries.clear();
                    let mut seq = journal.last_seq();
                    for r in &batch {
                        if let Request::Command(cmd, _) = r {
                            seq += 1;
                            // Never backwards, so replay sees the same order of time.
                            let ts = UnixNanos(clock.now().as_i64().max(last_ts.as_i64()));
                            last_ts = ts;
                            entries.push(JournalEntry {
                                seq,
                                ts,
                                cmd: cmd.clone(),
                            });
                        }
                    }
                    if !entries.is_empty() {
                        match journal.append(&entries) {
                            Ok(Some(took)) => metrics.observe_fsync(took),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::error!(error = %e, "journal write failed; the exchange stops taking commands");
                                healthy.store(false, Ordering::Release);
                                return;
                            }
                        }
                    }
                    let mut next = entries.iter();
                    for r in batch.drain(..) {
                        match r {
                            Request::Read(f) => f(&ex),
                            Request::Command(cmd, reply) => {
                                let entry = next.next().expect("one entry per command");
                                let mut out = Vec::new();
                                let started = Instant::now();
                                let result = ex.apply(&cmd, entry.ts, &mut out);
                                metrics.observe_command(&cmd, &result, &out, started.elapsed());
                                let applied = Arc::new(Applied {
                                    seq: entry.seq,
                                    ts: entry.ts,
                                    events: out,
                                    replayed: false,
                                });
                                if let Some(d) = &durable {
                                    let _ = d.tx.send(applied.clone());
                                }
                                let _ = events.send(applied.clone());
                                let _ = reply.send(Executed {
                                    seq: entry.seq,
                                    result,
                                    events: applied,
                                });
                            }
                        }
                    }
                    metrics.observe_books(&ex);
                    let seq = journal.last_seq();
                    if seq >= last_snapshot + settings.snapshot_every {
                        // Recovery re-sends only what follows the snapshot, so
                        // the durable listener must have stored everything up
                        // to it first. Never wait for it (that would stall
                        // order entry): defer the snapshot; recovery then
                        // replays a longer journal.
                        let caught_up = durable
                            .as_ref()
                            .is_none_or(|d| d.stored.load(Ordering::Acquire) >= seq);
                        if !caught_up && seq >= last_snapshot + 4 * settings.snapshot_every {
                            tracing::warn!(seq, last_snapshot, "history writer is behind; snapshot deferred");
                        }
                        if caught_up {
                            match journal.snapshot(seq, &ex.export()) {
                                Ok(()) => last_snapshot = seq,
                                Err(e) => tracing::warn!(error = %e, "snapshot failed; will retry"),
                            }
                        }
                    }
                }
                healthy.store(false, Ordering::Release);
            })
            .map_err(|source| JournalError::Log(tradestack_wal::WalError::Io { path: dir, source }))?;
        Ok(Sequencer {
            handle,
            recovery: report,
            thread,
        })
    }
}
