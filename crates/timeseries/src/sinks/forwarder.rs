//! Background forwarding of batches to sinks, never blocking the writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Sink, SinkError};
use crate::schema::TableSchema;

/// How a [`Forwarder`] queues and retries.
#[derive(Clone, Debug)]
pub struct ForwarderOptions {
    /// Batches queued per sink before new ones are dropped.
    pub capacity: usize,
    /// Retries of a failed write (so `retries + 1` attempts).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for ForwarderOptions {
    fn default() -> ForwarderOptions {
        ForwarderOptions {
            capacity: 1024,
            retries: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

struct Job {
    table: TableSchema,
    batch: RecordBatch,
}

/// What a [`Forwarder`] did, counted per sink and batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwarderStats {
    /// Rows the sinks reported written, summed over sinks.
    pub rows: u64,
    /// Batches dropped because a sink's queue was full.
    pub dropped: u64,
    /// Batches given up after all retries.
    pub failed: u64,
}

#[derive(Default)]
struct Stats {
    dropped: AtomicU64,
    failed: AtomicU64,
    rows: AtomicU64,
}

/// Sends every forwarded batch to each sink from a task of its own, so a
/// slow or unreachable sink delays only itself.
pub struct Forwarder {
    queues: Vec<(String, mpsc::Sender<Arc<Job>>)>,
    workers: Vec<JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl Forwarder {
    /// Starts one task per sink with default options (inside a tokio runtime).
    pub fn spawn(sinks: Vec<Arc<dyn Sink>>) -> Forwarder {
        Forwarder::with_options(sinks, ForwarderOptions::default())
    }

    /// Starts one task per sink.
    pub fn with_options(sinks: Vec<Arc<dyn Sink>>, options: ForwarderOptions) -> Forwarder {
        let stats = Arc::new(Stats::default());
        let mut queues = Vec::with_capacity(sinks.len());
        let mut workers = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let (tx, rx) = mpsc::channel(options.capacity.max(1));
            queues.push((sink.name().to_string(), tx));
            workers.push(tokio::spawn(run(sink, rx, options.clone(), stats.clone())));
        }
        Forwarder {
            queues,
            workers,
            stats,
        }
    }

    /// Queues the batch for every sink; where a queue is full the batch is
    /// dropped for that sink and counted, never waited for.
    pub fn forward(&self, table: TableSchema, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        let job = Arc::new(Job { table, batch });
        for (name, tx) in &self.queues {
            if tx.try_send(job.clone()).is_err() {
                let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Every power of two: visible without flooding the log.
                if n.is_power_of_two() {
                    tracing::warn!(sink = %name, table = %job.table.name, dropped = n, "sink queue full or closed: batch dropped");
                }
            }
        }
    }

    /// Batches dropped because a sink's queue was full (one per sink and batch).
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    /// The counters so far.
    pub fn stats(&self) -> ForwarderStats {
        ForwarderStats {
            rows: self.stats.rows.load(Ordering::Relaxed),
            dropped: self.dropped(),
            failed: self.stats.failed.load(Ordering::Relaxed),
        }
    }

    /// Stops taking batches, waits until the queued ones are written or
    /// given up, and returns the final counters.
    pub async fn shutdown(self) -> ForwarderStats {
        drop(self.queues);
        for w in self.workers {
            let _ = w.await;
        }
        ForwarderStats {
            rows: self.stats.rows.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
        }
    }
}

async fn run(
    sink: Arc<dyn Sink>,
    mut rx: mpsc::Receiver<Arc<Job>>,
    options: ForwarderOptions,
    stats: Arc<Stats>,
) {
    while let Some(job) = rx.recv().await {
        let mut attempt = 0;
        loop {
            match sink.write(&job.table, &job.batch).await {
                Ok(rows) => {
                    stats.rows.fetch_add(rows, Ordering::Relaxed);
                    break;
                }
                Err(e) if attempt < options.retries && retryable(&e) => {
                    let wait = options.backoff.saturating_mul(1 << attempt.min(16));
                    tracing::warn!(sink = %sink.name(), table = %job.table.name, attempt, error = %e, ?wait, "sink write failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(sink = %sink.name(), table = %job.table.name, rows = job.batch.num_rows(), error = %e, "sink write given up");
                    break;
                }
            }
        }
    }
}

/// A malformed batch or a bad configuration fails the same way every time.
fn retryable(e: &SinkError) -> bool {
    !matches!(e, SinkError::Batch { .. } | SinkError::Config(_))
}
