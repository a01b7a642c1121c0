//! One run's timeline, whichever clock it ran on: what was injected and
//! cleared, what was detected, when custody reconciled clean; when each
//! step is due, and how each expectation came out.
//!
//! Times are offsets from the start of the run, so the simulated and the
//! live coordinator judge a scenario by the same code.

use tradestack_audit::events::Outcome;
use tradestack_audit::{Correlation, Detection, Injection};
use tradestack_config::ConfigDuration;
use tradestack_model::{Amount, Nanos};

use crate::scenario::{Condition, Expectation, FaultKind, Step};

/// What a run has seen so far.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// Every injection with its fault, in injection order.
    pub injections: Vec<(Injection, FaultKind)>,
    /// Every alert fired and state changed, in order.
    pub detections: Vec<Detection>,
    /// Times custody reconciled clean.
    clean: Vec<Nanos>,
}

fn nanos(d: &ConfigDuration) -> Nanos {
    Nanos::from_std(d.as_std())
}

fn dur(d: &ConfigDuration) -> String {
    humantime::format_duration(d.as_std()).to_string()
}

fn secs(n: Nanos) -> String {
    format!(
        "{}.{:03} s",
        n.0 / 1_000_000_000,
        n.0 % 1_000_000_000 / 1_000_000
    )
}

impl Timeline {
    /// Records an injection.
    pub fn inject(&mut self, injection: Injection, fault: FaultKind) {
        self.injections.push((injection, fault));
    }

    /// Marks the injection `id` cleared at `at`; its updated record and fault.
    pub fn clear(&mut self, id: &str, at: Nanos) -> Option<(Injection, FaultKind)> {
        let entry = self
            .injections
            .iter_mut()
            .find(|(i, _)| i.id == id && i.cleared_at.is_none())?;
        entry.0.cleared_at = Some(at);
        Some(entry.clone())
    }

    /// Records a detection.
    pub fn detect(&mut self, d: Detection) {
        self.detections.push(d);
    }

    /// Records a clean reconciliation at `at`.
    pub fn reconciled_clean(&mut self, at: Nanos) {
        self.clean.push(at);
    }

    /// The injections alone.
    pub fn injected(&self) -> Vec<Injection> {
        self.injections.iter().map(|(i, _)| i.clone()).collect()
    }

    /// Faults injected and not cleared, with their ids.
    pub fn active(&self) -> Vec<(String, FaultKind)> {
        self.injections
            .iter()
            .filter(|(i, _)| i.cleared_at.is_none())
            .map(|(i, f)| (i.id.clone(), f.clone()))
            .collect()
    }

    /// True when `step` is due at `at` (its offset passed, or its condition holds).
    pub fn due(&self, step: &Step, at: Nanos) -> bool {
        match (&step.at, &step.when) {
            (Some(offset), _) => at >= nanos(offset),
            (None, Some(c)) => self.holds(c, at),
            _ => false,
        }
    }

    fn alerts(&self, rule: &str) -> impl Iterator<Item = Nanos> {
        self.detections
            .iter()
            .filter(move |d| d.kind == "alert" && d.rule == rule)
            .map(|d| d.at)
    }

    fn reached(&self, strategy: &str, state: &str) -> impl Iterator<Item = Nanos> {
        self.detections
            .iter()
            .filter(move |d| {
                d.kind == "state"
                    && d.subject.rsplit('/').next() == Some(strategy)
                    && d.detail == state
            })
            .map(|d| d.at)
    }

    fn holds(&self, c: &Condition, at: Nanos) -> bool {
        match c {
            Condition::Alert { rule } => self.alerts(rule).next().is_some(),
            Condition::State { strategy, state } => self
                .reached(strategy.as_str(), &state.to_string())
                .next()
                .is_some(),
            Condition::Cleared { fault, after } => self.injections.iter().any(|(i, _)| {
                &i.id == fault
                    && i.cleared_at
                        .is_some_and(|c| at.0 >= c.0 + after.as_ref().map_or(0, |a| nanos(a).0))
            }),
        }
    }

    /// The audit correlator's view of the run.
    pub fn correlation(&self, grace: Nanos, rules: &[&str]) -> Correlation {
        tradestack_audit::correlate(&self.injected(), &self.detections, grace, rules)
    }

    /// Judges every expectation. `worst` is the lowest P&L seen; `lost` the
    /// orders unaccounted for, or why they could not be checked.
    pub fn judge_all(
        &self,
        expect: &[Expectation],
        worst: Option<Amount>,
        lost: &Result<Vec<String>, String>,
    ) -> Vec<Outcome> {
        expect.iter().map(|e| self.judge(e, worst, lost)).collect()
    }

    fn injection(&self, id: &str) -> Option<&Injection> {
        self.injections.iter().map(|(i, _)| i).find(|i| i.id == id)
    }

    fn judge(
        &self,
        e: &Expectation,
        worst: Option<Amount>,
        lost: &Result<Vec<String>, String>,
    ) -> Outcome {
        let within =
            |first: Option<Nanos>, limit: &ConfigDuration, what: &str, never: String| match first {
                Some(l) => (l <= nanos(limit), format!("{what} {}", secs(l))),
                None => (false, never),
            };
        let (expectation, passed, detail) = match e {
            Expectation::Alert {
                rule,
                after,
                within: limit,
            } => {
                let text = format!("alert {rule} within {} of {after}", dur(limit));
                match self.injection(after) {
                    None => (text, false, format!("{after} was never injected")),
                    Some(i) => {
                        let first = self.alerts(rule).find(|t| *t >= i.at).map(|t| t - i.at);
                        let (p, d) = within(first, limit, "fired after", "never fired".into());
                        (text, p, d)
                    }
                }
            }
            Expectation::NoAlert { rule, from, to } => {
                let from_n = from.as_ref().map_or(Nanos(0), nanos);
                let to_n = to.as_ref().map_or(Nanos(i64::MAX), nanos);
                let text = format!("no alert {rule} in the quiet period");
                match self.alerts(rule).find(|t| (from_n..to_n).contains(t)) {
                    Some(t) => (text, false, format!("fired at {}", secs(t))),
                    None => (text, true, "quiet".into()),
                }
            }
            Expectation::State {
                strategy,
                state,
                after,
                within: limit,
            } => {
                let text = format!(
                    "{strategy} reaches {state} within {} of {after}",
                    dur(limit)
                );
                match self.injection(after) {
                    None => (text, false, format!("{after} was never injected")),
                    Some(i) => {
                        let first = self
                            .reached(strategy.as_str(), &state.to_string())
                            .find(|t| *t >= i.at)
                            .map(|t| t - i.at);
                        let (p, d) =
                            within(first, limit, "after", format!("never reached {state}"));
                        (text, p, d)
                    }
                }
            }
            Expectation::Reconciled {
                after,
                within: limit,
            } => {
                let text = format!(
                    "custody reconciled within {} of clearing {after}",
                    dur(limit)
                );
                match self.injection(after).and_then(|i| i.cleared_at) {
                    None => (text, false, format!("{after} was never cleared")),
                    Some(c) => {
                        let first = self.clean.iter().find(|t| **t >= c).map(|t| *t - c);
                        let (p, d) =
                            within(first, limit, "clean after", "never clean after it".into());
                        (text, p, d)
                    }
                }
            }
            Expectation::PnlImpact { max_loss } => {
                let text = format!("P&L stays above -{max_loss}");
                match worst {
                    Some(w) => (text, w >= Amount::ZERO - *max_loss, format!("worst {w}")),
                    None => (text, false, "no P&L could be read".into()),
                }
            }
            Expectation::NoLostOrders => {
                let text = "no acknowledged order lost".to_string();
                match lost {
                    Ok(l) if l.is_empty() => (text, true, "every order accounted for".into()),
                    Ok(l) => (text, false, format!("unaccounted: {}", l.join(", "))),
                    Err(why) => (text, false, format!("could not be checked: {why}")),
                }
            }
        };
        Outcome {
            expectation,
            passed,
            detail,
        }
    }
}
