//! The audit correlator.
//!
//! [`correlate`] takes what was injected (each fault with its time and,
//! once cleared, its clearing time) and what was detected (alerts and
//! trading-state changes, with their times), and matches them: a detection
//! answers the most recent injection active (or cleared less than the grace
//! period ago) when it happened. From that come each injection's detection
//! latency, the injections nothing detected, the detections that answered
//! no injection (false positives), and the coverage: the share of
//! injections detected and of the known rules exercised.
//!
//! Pure and deterministic: the same timeline gives the same correlation.
//!
//! - [`events`]: the bus topics the chaos coordinator publishes runs and
//!   injections on, and alerts and state changes as detections.
//! - [`service`]: the correlator as its own service, reading everything
//!   from the bus, with its metrics.
//! - [`positions`]: the independent check of positions against the fills.

pub mod events;
pub mod positions;
pub mod service;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tradestack_model::Nanos;

/// One injected fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injection {
    /// Its id in the scenario.
    pub id: String,
    /// Its kind (`market_shock`, `exchange_outage`, ...).
    pub kind: String,
    /// When, as an offset from the start of the run.
    pub at: Nanos,
    /// When it was cleared, if it was.
    pub cleared_at: Option<Nanos>,
}

/// One detection: an alert fired, or a trading state changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    /// When, as an offset from the start of the run.
    pub at: Nanos,
    /// `alert` or `state`.
    pub kind: String,
    /// The rule (for a state change: the rule that made it, or `manual`).
    pub rule: String,
    /// What it is about.
    pub subject: String,
    /// Alerts: the severity; states: the new state.
    pub detail: String,
}

/// How one injection was answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    /// The injection's id.
    pub injection: String,
    /// Its kind.
    pub kind: String,
    /// The first detection that answered it, if any.
    pub first_detection: Option<Detection>,
    /// Time from the injection to that detection.
    pub latency: Option<Nanos>,
    /// Every rule that answered it, sorted.
    pub rules: Vec<String>,
}

/// The correlation of one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correlation {
    /// Each injection, in injection order.
    pub injections: Vec<Answered>,
    /// Injections no detection answered.
    pub missed: Vec<String>,
    /// Detections that answered no injection.
    pub false_positives: Vec<Detection>,
    /// Injections detected, basis points of all injections.
    pub detected_bps: u32,
    /// Rules that fired at least once, sorted.
    pub rules_exercised: Vec<String>,
    /// Rules exercised, basis points of the known rules.
    pub rules_bps: u32,
}

fn bps(part: usize, whole: usize) -> u32 {
    if whole == 0 {
        return 0;
    }
    u32::try_from(part * 10_000 / whole).unwrap_or(u32::MAX)
}

/// Matches `detections` to `injections`. A detection up to `grace` after an
/// injection was cleared still answers it (recovery takes time); manual
/// state changes answer nothing and are never false positives. `rules` are
/// the rules that could fire, for coverage.
pub fn correlate(
    injections: &[Injection],
    detections: &[Detection],
    grace: Nanos,
    rules: &[&str],
) -> Correlation {
    let mut answered: Vec<Answered> = injections
        .iter()
        .map(|i| Answered {
            injection: i.id.clone(),
            kind: i.kind.clone(),
            first_detection: None,
            latency: None,
            rules: Vec::new(),
        })
        .collect();
    let mut false_positives = Vec::new();
    let mut exercised = BTreeSet::new();
    for d in detections {
        if d.rule == "manual" {
            continue;
        }
        if d.kind == "alert" {
            exercised.insert(d.rule.clone());
        }
        // The most recent injections still active (or within grace of their
        // clearing); injections made at the same instant share the credit.
        let live: Vec<usize> = injections
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                i.at <= d.at
                    && i.cleared_at
                        .is_none_or(|c| d.at.0 <= c.0.saturating_add(grace.0))
            })
            .map(|(n, _)| n)
            .collect();
        let latest = live.iter().map(|&n| injections[n].at).max();
        let owners: Vec<usize> = live
            .into_iter()
            .filter(|&n| Some(injections[n].at) == latest)
            .collect();
        if owners.is_empty() {
            false_positives.push(d.clone());
        }
        for n in owners {
            let a = &mut answered[n];
            if a.first_detection.is_none() {
                a.latency = Some(Nanos(d.at.0 - injections[n].at.0));
                a.first_detection = Some(d.clone());
            }
            if !a.rules.contains(&d.rule) {
                a.rules.push(d.rule.clone());
                a.rules.sort();
            }
        }
    }
    let missed: Vec<String> = answered
        .iter()
        .filter(|a| a.first_detection.is_none())
        .map(|a| a.injection.clone())
        .collect();
    let known: BTreeSet<&str> = rules.iter().copied().collect();
    let exercised_known = exercised
        .iter()
        .filter(|r| known.contains(r.as_str()))
        .count();
    Correlation {
        detected_bps: bps(injections.len() - missed.len(), injections.len()),
        injections: answered,
        missed,
        false_positives,
        rules_bps: bps(exercised_known, known.len()),
        rules_exercised: exercised.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inj(id: &str, at: i64, cleared: Option<i64>) -> Injection {
        Injection {
            id: id.into(),
            kind: "k".into(),
            at: Nanos::from_secs(at),
            cleared_at: cleared.map(Nanos::from_secs),
        }
    }

    fn det(at: i64, rule: &str) -> Detection {
        Detection {
            at: Nanos::from_secs(at),
            kind: "alert".into(),
            rule: rule.into(),
            subject: "s".into(),
            detail: "critical".into(),
        }
    }

    #[test]
    fn detections_answer_the_latest_active_injection() {
        let injections = [
            inj("a", 10, Some(20)),
            inj("b", 100, None),
            inj("c", 200, Some(210)),
        ];
        let detections = [
            det(5, "stale_data"),       // before anything: false positive
            det(13, "order_rate"),      // a, 3 s
            det(25, "order_rate"),      // within a's grace
            det(60, "drawdown"),        // a cleared long ago: false positive
            det(130, "depeg_exposure"), // b, 30 s
        ];
        let c = correlate(
            &injections,
            &detections,
            Nanos::from_secs(10),
            &[
                "order_rate",
                "drawdown",
                "stale_data",
                "depeg_exposure",
                "self_trade",
            ],
        );
        assert_eq!(c.injections[0].latency, Some(Nanos::from_secs(3)));
        assert_eq!(c.injections[0].rules, vec!["order_rate".to_string()]);
        assert_eq!(c.injections[1].latency, Some(Nanos::from_secs(30)));
        assert_eq!(c.missed, vec!["c".to_string()]);
        assert_eq!(
            c.false_positives
                .iter()
                .map(|d| d.at.0 / 1_000_000_000)
                .collect::<Vec<_>>(),
            vec![5, 60]
        );
        assert_eq!(c.detected_bps, 6_666);
        assert_eq!(c.rules_bps, 8_000);
    }

    #[test]
    fn simultaneous_injections_share_a_detection() {
        let c = correlate(
            &[inj("crash", 10, None), inj("vol", 10, Some(100))],
            &[det(40, "drawdown")],
            Nanos(0),
            &["drawdown"],
        );
        assert!(c.missed.is_empty(), "{c:?}");
        assert_eq!(c.injections[1].latency, Some(Nanos::from_secs(30)));
    }

    #[test]
    fn manual_changes_answer_nothing() {
        let mut d = det(15, "manual");
        d.kind = "state".into();
        let c = correlate(&[inj("a", 10, None)], &[d], Nanos(0), &[]);
        assert_eq!(c.missed, vec!["a".to_string()]);
        assert!(c.false_positives.is_empty());
        assert_eq!(c.rules_bps, 0);
    }
}
