//! Deduplicated alerts: one per rule and subject, from first seen to resolved.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tradestack_model::{Alert, Amount, Severity, UnixNanos};

/// What a rule found in one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule.
    pub rule: &'static str,
    /// How bad.
    pub severity: Severity,
    /// What it is about.
    pub subject: String,
    /// For people.
    pub message: String,
    /// The observed value, in the rule's units.
    pub value: Amount,
    /// The limit it broke.
    pub threshold: Amount,
}

/// A change to an alert, as published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum AlertChange {
    /// First seen.
    Fired(Alert),
    /// The condition cleared.
    Resolved(Alert),
}

impl AlertChange {
    /// The alert.
    pub fn alert(&self) -> &Alert {
        match self {
            AlertChange::Fired(a) | AlertChange::Resolved(a) => a,
        }
    }
}

/// Alerts by (rule, subject): a finding seen again updates its alert
/// (`last_seen`, value) instead of raising a new one; one not seen in an
/// evaluation resolves it. A condition that comes back after resolving
/// fires a new alert.
#[derive(Clone, Debug, Default)]
pub struct AlertBook {
    active: BTreeMap<(String, String), Alert>,
    history: Vec<Alert>,
}

impl AlertBook {
    /// Applies one evaluation's findings at `now`; returns what changed.
    pub fn update(&mut self, findings: Vec<Finding>, now: UnixNanos) -> Vec<AlertChange> {
        let mut changes = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for f in findings {
            let key = (f.rule.to_string(), f.subject.clone());
            seen.insert(key.clone());
            match self.active.get_mut(&key) {
                Some(a) => {
                    a.last_seen = now;
                    a.value = f.value;
                    a.message = f.message;
                    a.severity = a.severity.max(f.severity);
                }
                None => {
                    let a = Alert {
                        rule: f.rule.to_string(),
                        severity: f.severity,
                        subject: f.subject,
                        message: f.message,
                        value: f.value,
                        threshold: f.threshold,
                        first_seen: now,
                        last_seen: now,
                        resolved: false,
                    };
                    changes.push(AlertChange::Fired(a.clone()));
                    self.active.insert(key, a);
                }
            }
        }
        let gone: Vec<(String, String)> = self
            .active
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(mut a) = self.active.remove(&k) {
                a.resolved = true;
                a.last_seen = now;
                self.history.push(a.clone());
                changes.push(AlertChange::Resolved(a));
            }
        }
        changes
    }

    /// Alerts firing now.
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    /// Resolved alerts, oldest first.
    pub fn resolved(&self) -> &[Alert] {
        &self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(value: i64) -> Finding {
        Finding {
            rule: "position_limit",
            severity: Severity::Critical,
            subject: "a/s BTC-USDT".into(),
            message: "over".into(),
            value: Amount::from_units(value.into()),
            threshold: Amount::from_units(1),
        }
    }

    #[test]
    fn a_repeated_finding_is_one_alert_until_it_resolves() {
        let mut book = AlertBook::default();
        let c = book.update(vec![finding(2)], UnixNanos(10));
        assert!(matches!(&c[..], [AlertChange::Fired(a)] if a.first_seen == UnixNanos(10)));
        assert!(book.update(vec![finding(3)], UnixNanos(20)).is_empty());
        let a = book.active().next().unwrap();
        assert_eq!(
            (a.first_seen, a.last_seen, a.value),
            (UnixNanos(10), UnixNanos(20), Amount::from_units(3))
        );
        let c = book.update(vec![], UnixNanos(30));
        assert!(
            matches!(&c[..], [AlertChange::Resolved(a)] if a.resolved && a.last_seen == UnixNanos(30))
        );
        assert_eq!(book.active().count(), 0);
        // It comes back: a new alert.
        let c = book.update(vec![finding(2)], UnixNanos(40));
        assert!(matches!(&c[..], [AlertChange::Fired(a)] if a.first_seen == UnixNanos(40)));
    }
}
