//! Trading states per strategy and account, and their audited changes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use tradestack_model::{AccountId, StrategyId, UnixNanos};

/// What a strategy (or a whole account) may do.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradingState {
    /// Trades normally.
    #[default]
    #[serde(alias = "active")]
    Active,
    /// Only orders that reduce its position.
    #[serde(alias = "reducing")]
    Reducing,
    /// Nothing new; its open orders were cancelled (the kill switch).
    #[serde(alias = "halted")]
    Halted,
}

impl fmt::Display for TradingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TradingState::Active => "ACTIVE",
            TradingState::Reducing => "REDUCING",
            TradingState::Halted => "HALTED",
        })
    }
}

/// Whose state: a whole account (`strategy: None`) or one strategy of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subject {
    /// The account.
    pub account: AccountId,
    /// The strategy, or the whole account.
    pub strategy: Option<StrategyId>,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.strategy {
            Some(s) => write!(f, "{}/{}", self.account, s),
            None => write!(f, "{}", self.account),
        }
    }
}

/// Who changed a state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum ChangedBy {
    /// A rule, automatically.
    Rule {
        /// The rule's name.
        rule: String,
    },
    /// A person, through the API or the CLI.
    Manual {
        /// Who.
        user: String,
    },
}

/// One audited state change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Whose state.
    pub subject: Subject,
    /// Before.
    pub from: TradingState,
    /// After.
    pub to: TradingState,
    /// Why.
    pub reason: String,
    /// Who.
    #[serde(flatten)]
    pub by: ChangedBy,
    /// When.
    pub at: UnixNanos,
}

/// Every subject's state and the audit trail of changes.
#[derive(Clone, Debug, Default)]
pub struct StateBook {
    states: BTreeMap<Subject, TradingState>,
    audit: Vec<Transition>,
}

impl StateBook {
    /// The state of one subject (ACTIVE unless changed).
    pub fn get(&self, subject: &Subject) -> TradingState {
        self.states.get(subject).copied().unwrap_or_default()
    }

    /// The effective state of a strategy: the stricter of its own and its account's.
    pub fn effective(&self, account: &AccountId, strategy: Option<&StrategyId>) -> TradingState {
        let account_state = self.get(&Subject {
            account: account.clone(),
            strategy: None,
        });
        let own = strategy.map_or(TradingState::Active, |s| {
            self.get(&Subject {
                account: account.clone(),
                strategy: Some(s.clone()),
            })
        });
        account_state.max(own)
    }

    /// Sets a state; returns the transition when it changed anything.
    pub fn set(
        &mut self,
        subject: Subject,
        to: TradingState,
        reason: &str,
        by: ChangedBy,
        at: UnixNanos,
    ) -> Option<Transition> {
        let from = self.get(&subject);
        if from == to {
            return None;
        }
        self.states.insert(subject.clone(), to);
        let t = Transition {
            subject,
            from,
            to,
            reason: reason.to_string(),
            by,
            at,
        };
        self.audit.push(t.clone());
        Some(t)
    }

    /// Every subject not ACTIVE.
    pub fn restricted(&self) -> impl Iterator<Item = (&Subject, TradingState)> {
        self.states
            .iter()
            .filter(|(_, s)| **s != TradingState::Active)
            .map(|(k, s)| (k, *s))
    }

    /// The audit trail, oldest first.
    pub fn audit(&self) -> &[Transition] {
        &self.audit
    }
}
