//! What the chaos coordinator publishes for the audit correlator, and how
//! the risk service's alerts and state changes become detections.
//!
//! Times on these topics are offsets from the start of the run they belong
//! to, so a run reads the same whether it ran in simulated or real time.

use serde::{Deserialize, Serialize};
use tradestack_model::{Alert, Nanos, UnixNanos};
use tradestack_risk::{ChangedBy, Transition};

use crate::{Detection, Injection};

/// Bus topic of injections and clearings ([`InjectionEvent`]).
pub const INJECTIONS_TOPIC: &str = "chaos.injections";
/// Bus topic of scenario runs starting and finishing ([`RunEvent`]).
pub const RUNS_TOPIC: &str = "chaos.runs";

/// A fault injected or cleared during a run (`injection.cleared_at` set when cleared).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectionEvent {
    /// The run.
    pub run: String,
    /// The injection as it stands now.
    pub injection: Injection,
}

/// How one expectation came out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The expectation, in words.
    pub expectation: String,
    /// Whether it held.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Steps are being applied.
    Running,
    /// Every expectation held.
    Passed,
    /// At least one expectation did not hold.
    Failed,
    /// Stopped before its end; faults were cleared.
    Aborted,
}

impl RunStatus {
    /// True once the run has ended.
    pub fn ended(self) -> bool {
        self != RunStatus::Running
    }
}

/// A run started or ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEvent {
    /// The run's id.
    pub run: String,
    /// The scenario's name.
    pub scenario: String,
    /// Its status.
    pub status: RunStatus,
    /// When it started (wall clock of the coordinator).
    pub start: UnixNanos,
    /// How long it runs.
    pub duration: Nanos,
    /// When it ended: the expectations' outcomes.
    pub outcomes: Vec<Outcome>,
}

/// An alert that fired at `at`, as a detection of a run started at `start`.
pub fn alert_detection(a: &Alert, at: UnixNanos, start: UnixNanos) -> Detection {
    Detection {
        at: Nanos(at.0 - start.0),
        kind: "alert".into(),
        rule: a.rule.clone(),
        subject: a.subject.clone(),
        detail: format!("{:?}", a.severity).to_lowercase(),
    }
}

/// A trading-state change, as a detection of a run started at `start`.
pub fn transition_detection(t: &Transition, start: UnixNanos) -> Detection {
    Detection {
        at: Nanos(t.at.0 - start.0),
        kind: "state".into(),
        rule: match &t.by {
            ChangedBy::Rule { rule } => rule.clone(),
            ChangedBy::Manual { .. } => "manual".into(),
        },
        subject: t.subject.to_string(),
        detail: t.to.to_string(),
    }
}
