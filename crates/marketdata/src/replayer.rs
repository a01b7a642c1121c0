//! Replay jobs: recorded files onto the market-data feed at real speed, at N×, or as fast as
//! possible (simulated time), and into the time-series store.
//!
//! A job loads its files with [`crate::replay::load::load`] (format detection, bad rows
//! reported and skipped), then publishes each event through the feed gateway when it is due
//! by [`replay_delay`], and records it under its own venue with its own bar builder, so
//! replayed history never mixes with the live exchange's bars. Jobs run in the background;
//! their progress is polled.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde::Serialize;
use tradestack_model::{Nanos, UnixNanos};
use tradestack_timeseries::Store;

use crate::bars::BarConfig;
use crate::disruption::Tick;
use crate::gateway::FeedHandle;
use crate::recorder::{RecordError, Recorder};
use crate::replay::load::load;
use crate::replay::{Speed, SymbolMap, replay_delay};

/// Row errors kept in a job's status (the count covers them all).
const KEPT_ERRORS: usize = 20;
/// Rows recorded between commits.
const COMMIT_EVERY: usize = 10_000;

/// What to replay.
#[derive(Clone, Debug)]
pub struct ReplayRequest {
    /// The files, on the service's machine.
    pub files: Vec<PathBuf>,
    /// How fast.
    pub speed: Speed,
    /// Also store the events (trades, quotes, bars and books, plus bars built from trades).
    pub record: bool,
    /// Venue symbols to instrument ids.
    pub symbols: SymbolMap,
}

/// A job's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Reading the files.
    Loading,
    /// Publishing.
    Running,
    /// Every event was published (and recorded).
    Done,
    /// The files could not be read or the store failed.
    Failed,
    /// Cancelled.
    Cancelled,
}

/// A job's progress.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayStatus {
    /// Job id.
    pub id: u64,
    /// The files.
    pub files: Vec<String>,
    /// `max`, `realtime` or `Nx`.
    pub speed: String,
    /// State.
    pub state: JobState,
    /// Events loaded.
    pub total: u64,
    /// Events published so far.
    pub published: u64,
    /// Time of the last event published.
    pub position: Option<UnixNanos>,
    /// First and last event time.
    pub span: Option<(UnixNanos, UnixNanos)>,
    /// Rows skipped as malformed.
    pub row_errors: u64,
    /// The first of them.
    pub first_row_errors: Vec<String>,
    /// Why the job failed.
    pub error: Option<String>,
}

struct Job {
    status: Mutex<ReplayStatus>,
    cancel: AtomicBool,
}

/// The service's replay jobs.
pub struct Replays {
    store: Store,
    feed: FeedHandle,
    bars: BarConfig,
    jobs: Mutex<BTreeMap<u64, Arc<Job>>>,
}

impl Replays {
    /// Jobs publish to `feed` and record into `store` with `bars`.
    pub fn new(store: Store, feed: FeedHandle, bars: BarConfig) -> Self {
        Replays {
            store,
            feed,
            bars,
            jobs: Mutex::new(BTreeMap::new()),
        }
    }

    /// Starts a job in the background; its id.
    pub fn start(self: &Arc<Self>, request: ReplayRequest) -> u64 {
        let mut jobs = self.jobs.lock();
        let id = jobs.keys().next_back().map_or(1, |k| k + 1);
        let job = Arc::new(Job {
            status: Mutex::new(ReplayStatus {
                id,
                files: request
                    .files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect(),
                speed: request.speed.to_string(),
                state: JobState::Loading,
                total: 0,
                published: 0,
                position: None,
                span: None,
                row_errors: 0,
                first_row_errors: Vec::new(),
                error: None,
            }),
            cancel: AtomicBool::new(false),
        });
        jobs.insert(id, job.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.run(&job, request).await;
            let mut s = job.status.lock();
            match result {
                Ok(()) if job.cancel.load(Ordering::Relaxed) => s.state = JobState::Cancelled,
                Ok(()) => s.state = JobState::Done,
                Err(e) => {
                    tracing::warn!(job = id, error = %e, "replay failed");
                    s.state = JobState::Failed;
                    s.error = Some(e);
                }
            }
        });
        id
    }

    /// A job's progress.
    pub fn status(&self, id: u64) -> Option<ReplayStatus> {
        self.jobs.lock().get(&id).map(|j| j.status.lock().clone())
    }

    /// Every job's progress.
    pub fn list(&self) -> Vec<ReplayStatus> {
        self.jobs
            .lock()
            .values()
            .map(|j| j.status.lock().clone())
            .collect()
    }

    /// Asks a job to stop; false if there is no such job.
    pub fn cancel(&self, id: u64) -> bool {
        match self.jobs.lock().get(&id) {
            Some(j) => {
                j.cancel.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    async fn run(&self, job: &Job, request: ReplayRequest) -> Result<(), String> {
        let files = request.files.clone();
        let symbols = request.symbols.clone();
        let timeline = tokio::task::spawn_blocking(move || load(&files, &symbols))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let first = timeline.events.first().map(|m| m.event.ts());
        let last = timeline.events.last().map(|m| m.event.ts());
        {
            let mut s = job.status.lock();
            s.state = JobState::Running;
            s.total = timeline.events.len() as u64;
            s.span = first.zip(last);
            s.row_errors = timeline.errors.len() as u64;
            s.first_row_errors = timeline
                .errors
                .iter()
                .take(KEPT_ERRORS)
                .map(ToString::to_string)
                .collect();
        }
        let Some(first) = first else {
            return Ok(());
        };
        let mut recorders: HashMap<String, Recorder> = HashMap::new();
        let started = tokio::time::Instant::now();
        let mut pending_rows = 0usize;
        let (mut published, mut position) = (0u64, None);
        for (i, m) in timeline.events.into_iter().enumerate() {
            if job.cancel.load(Ordering::Relaxed) {
                break;
            }
            let ts = m.event.ts();
            let due = replay_delay(first, ts, request.speed).map_err(|e| e.to_string())?;
            if due > Nanos::ZERO {
                tokio::time::sleep_until(started + std::time::Duration::from_nanos(due.0 as u64))
                    .await;
            } else if i % 1_024 == 0 {
                tokio::task::yield_now().await;
            }
            if request.record {
                let r = match recorders.get_mut(&m.venue) {
                    Some(r) => r,
                    None => {
                        let r = Recorder::new(self.store.clone(), &m.venue, &self.bars)
                            .map_err(|e| e.to_string())?;
                        recorders.entry(m.venue.clone()).or_insert(r)
                    }
                };
                if let Err(e) = r.event(&m.event) {
                    record_failed(job, &e);
                }
                pending_rows += 1;
            }
            self.feed.send(m).await.map_err(|e| e.to_string())?;
            if pending_rows >= COMMIT_EVERY {
                pending_rows = 0;
                commit_all(&mut recorders, false)?;
            }
            published = i as u64 + 1;
            position = Some(ts);
            if i % 256 == 0 {
                let mut s = job.status.lock();
                s.published = published;
                s.position = position;
            }
        }
        commit_all(&mut recorders, true)?;
        let mut s = job.status.lock();
        s.published = published;
        s.position = position;
        Ok(())
    }
}

fn record_failed(job: &Job, e: &RecordError) {
    let mut s = job.status.lock();
    s.row_errors += 1;
    if s.first_row_errors.len() < KEPT_ERRORS {
        s.first_row_errors.push(e.to_string());
    }
}

/// Commits every recorder's rows (closing the open bars first at the end).
fn commit_all(recorders: &mut HashMap<String, Recorder>, finish: bool) -> Result<(), String> {
    tokio::task::block_in_place(|| {
        for r in recorders.values_mut() {
            if finish {
                r.finish_bars().map_err(|e| e.to_string())?;
            }
            r.commit().map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
