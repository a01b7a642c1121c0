//! Scenario files: YAML, described by `scenario.schema.json`.
//!
//! A scenario names a seed and a duration, the instruments, agents and
//! strategies it runs, the risk limits and custody cycle, the steps that
//! inject and clear faults (at a simulated-time offset, or when a condition
//! first holds), and the expectations the run is judged by.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tradestack_config::ConfigDuration;
use tradestack_marketdata::agents::AgentConfig;
use tradestack_model::{AccountId, Amount, AssetCode, InstrumentId, Price, StrategyId};
use tradestack_risk::{RiskConfig, TradingState};
use tradestack_trading::{Misbehaviour, StrategyConfig};

/// One scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, e.g. `market-crash`.
    pub name: String,
    /// What it tests, for people.
    pub description: String,
    /// Seed of every random stream (overridable with `--seed`).
    pub seed: u64,
    /// Simulated time the run lasts, e.g. `"36h"`.
    pub duration: ConfigDuration,
    /// Instruments listed (default: the exchange's default listing).
    #[serde(default)]
    pub instruments: Vec<InstrumentId>,
    /// The agent population (default: the simulator's).
    #[serde(default)]
    pub agents: Option<Vec<AgentConfig>>,
    /// The strategies, as `[[strategies]]` entries.
    #[serde(default)]
    pub strategies: Vec<StrategyConfig>,
    /// What each strategy account is funded with, per asset.
    #[serde(default = "default_funding")]
    pub funding: Amount,
    /// Risk limits, as `[risk]`.
    #[serde(default)]
    pub risk: RiskConfig,
    /// Custody settlement: `t0` or days.
    #[serde(default)]
    pub custody: CustodySpec,
    /// Faults injected and cleared.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// What must hold.
    #[serde(default)]
    pub expect: Vec<Expectation>,
}

fn default_funding() -> Amount {
    Amount::from_units(1_000_000)
}

/// Custody in a scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustodySpec {
    /// 0 for T+0, else T+N days.
    pub settle_days: u32,
    /// How often custody reconciles with the exchange.
    pub reconcile_every: ConfigDuration,
}

impl Default for CustodySpec {
    fn default() -> Self {
        CustodySpec {
            settle_days: 0,
            reconcile_every: ConfigDuration::from_secs(10),
        }
    }
}

/// One step: when, and what.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Offset from the start.
    #[serde(default)]
    pub at: Option<ConfigDuration>,
    /// Or: the first time this holds.
    #[serde(default)]
    pub when: Option<Condition>,
    /// A fault to inject.
    #[serde(default)]
    pub inject: Option<Fault>,
    /// The id of an injected fault to clear.
    #[serde(default)]
    pub clear: Option<String>,
}

/// A condition a step can wait for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// An alert of this rule has fired.
    Alert {
        /// The rule.
        rule: String,
    },
    /// A strategy has reached this state.
    State {
        /// The strategy.
        strategy: StrategyId,
        /// The state.
        state: TradingState,
    },
    /// An injected fault has been cleared for at least this long.
    Cleared {
        /// The fault id.
        fault: String,
        /// How long ago.
        #[serde(default)]
        after: Option<ConfigDuration>,
    },
}

/// An injected fault, with the id steps and expectations refer to it by.
/// (Unknown keys are refused by the kind, which sees every key but `id`.)
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fault {
    /// Unique within the scenario.
    pub id: String,
    /// What is done.
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// The faults a scenario can inject.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// A coordinated move of every floating asset (or `assets`) by `change`
    /// (−0.15 = −15 %) over `over`.
    MarketShock {
        /// The relative change, > −1.
        change: f64,
        /// How long the move takes.
        #[serde(default)]
        over: Option<ConfigDuration>,
        /// The reference symbols moved (`BTC-USD`, ...); empty = all floating.
        #[serde(default)]
        assets: Vec<InstrumentId>,
    },
    /// A stablecoin (`USDT-USD`) falls to `target` over `decline`, holds,
    /// and recovers over `recovery`.
    Depeg {
        /// The reference symbol.
        asset: InstrumentId,
        /// The bottom, e.g. `"0.92"`.
        target: Price,
        /// How long the fall takes.
        decline: ConfigDuration,
        /// How long the bottom holds (default: until cleared).
        #[serde(default)]
        hold: Option<ConfigDuration>,
        /// How long the recovery takes.
        recovery: ConfigDuration,
    },
    /// Volatility multiplied by `factor` (and jumps by `jumps`).
    Volatility {
        /// Volatility multiplier.
        factor: f64,
        /// Jump-intensity multiplier.
        #[serde(default = "one")]
        jumps: f64,
    },
    /// The market makers pull their quotes.
    LiquidityWithdrawal,
    /// The exchange is down: requests fail after a timeout, streams stop,
    /// nobody trades.
    ExchangeOutage,
    /// Settlements fail (matching `asset` and `account`, `bps` of them).
    SettlementFailure {
        /// Only this asset.
        #[serde(default)]
        asset: Option<AssetCode>,
        /// Only this account.
        #[serde(default)]
        account: Option<AccountId>,
        /// Share hit, basis points (default all).
        #[serde(default)]
        bps: Option<u32>,
    },
    /// Settlements are postponed by `by`.
    SettlementDelay {
        /// Only this asset.
        #[serde(default)]
        asset: Option<AssetCode>,
        /// How long.
        by: ConfigDuration,
    },
    /// A strategy misbehaves (see the strategy service's misbehaviour modes).
    Strategy {
        /// The strategy.
        strategy: StrategyId,
        /// How.
        misbehaviour: Misbehaviour,
    },
    /// Market data reaches strategies and the risk monitor `delay` late.
    FeedDelay {
        /// How late.
        delay: ConfigDuration,
    },
    /// Every other quote reaches strategies and the risk monitor with its
    /// prices moved `bps` basis points, up and down in turn.
    FeedCorruption {
        /// How far.
        bps: i64,
    },
}

fn one() -> f64 {
    1.0
}

impl FaultKind {
    /// Its `kind` as written.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::MarketShock { .. } => "market_shock",
            FaultKind::Depeg { .. } => "depeg",
            FaultKind::Volatility { .. } => "volatility",
            FaultKind::LiquidityWithdrawal => "liquidity_withdrawal",
            FaultKind::ExchangeOutage => "exchange_outage",
            FaultKind::SettlementFailure { .. } => "settlement_failure",
            FaultKind::SettlementDelay { .. } => "settlement_delay",
            FaultKind::Strategy { .. } => "strategy",
            FaultKind::FeedDelay { .. } => "feed_delay",
            FaultKind::FeedCorruption { .. } => "feed_corruption",
        }
    }
}

/// What must hold for the run to pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// An alert of `rule` fires within `within` of the injection `after`.
    Alert {
        /// The rule.
        rule: String,
        /// The injection it answers.
        after: String,
        /// The longest acceptable detection latency.
        within: ConfigDuration,
    },
    /// No alert of `rule` fires in `[from, to)` (offsets; default the whole run).
    NoAlert {
        /// The rule.
        rule: String,
        /// From this offset.
        #[serde(default)]
        from: Option<ConfigDuration>,
        /// Until this offset.
        #[serde(default)]
        to: Option<ConfigDuration>,
    },
    /// `strategy` reaches `state` within `within` of the injection `after`.
    State {
        /// The strategy.
        strategy: StrategyId,
        /// The state.
        state: TradingState,
        /// The injection it answers.
        after: String,
        /// The longest acceptable time.
        within: ConfigDuration,
    },
    /// Custody reconciles clean within `within` of clearing the fault `after`.
    Reconciled {
        /// The fault whose clearing starts the clock.
        after: String,
        /// The longest acceptable time.
        within: ConfigDuration,
    },
    /// The strategies' total P&L (USD, at the reference) stays above `-max_loss`.
    PnlImpact {
        /// The largest acceptable loss.
        max_loss: Amount,
    },
    /// Every order the exchange acknowledged to a strategy is accounted for:
    /// what the engine holds open is what the exchange holds open.
    NoLostOrders,
}

/// Why a scenario is invalid: the field and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The field, dotted (`steps[2].inject.kind`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Scenario {
    /// Parses YAML and checks it; errors name the field.
    pub fn from_yaml(text: &str) -> Result<Scenario, Invalid> {
        let de = serde_norway::Deserializer::from_str(text);
        let s: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "(document)".to_string()
            } else {
                path
            };
            // The YAML error may start with the path itself.
            let message = e.inner().to_string();
            let message = message
                .strip_prefix(&format!("{path}: "))
                .unwrap_or(&message)
                .to_string();
            invalid(path, message)
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Checks what the types cannot: references between steps and
    /// expectations, offsets inside the run, known strategies.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        let duration = self.duration.as_std();
        if duration.is_zero() {
            return Err(invalid("duration", "must be > 0"));
        }
        let strategies: BTreeSet<&StrategyId> = self.strategies.iter().map(|s| &s.id).collect();
        if strategies.len() != self.strategies.len() {
            return Err(invalid("strategies", "two strategies share an id"));
        }
        let mut faults: BTreeSet<&str> = BTreeSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            let f = |k: &str| format!("steps[{i}].{k}");
            match (&step.at, &step.when) {
                (Some(_), Some(_)) => {
                    return Err(invalid(f("when"), "give `at` or `when`, not both"));
                }
                (None, None) => return Err(invalid(f("at"), "give `at` or `when`")),
                (Some(at), None) if at.as_std() > duration => {
                    return Err(invalid(f("at"), "is after the end of the run"));
                }
                _ => {}
            }
            match (&step.inject, &step.clear) {
                (Some(fault), None) => {
                    if !faults.insert(&fault.id) {
                        return Err(invalid(
                            f("inject.id"),
                            format!("{} is used twice", fault.id),
                        ));
                    }
                    if let FaultKind::Strategy { strategy, .. } = &fault.kind
                        && !strategies.contains(strategy)
                    {
                        return Err(invalid(
                            f("inject.strategy"),
                            format!("no strategy {strategy} in `strategies`"),
                        ));
                    }
                    if let FaultKind::MarketShock { change, .. } = &fault.kind
                        && !(*change > -1.0 && change.is_finite())
                    {
                        return Err(invalid(f("inject.change"), "must be > -1"));
                    }
                }
                (None, Some(id)) => {
                    if !faults.contains(id.as_str()) {
                        return Err(invalid(f("clear"), format!("no earlier injection {id}")));
                    }
                }
                _ => {
                    return Err(invalid(
                        f("inject"),
                        "give `inject` or `clear`, one of them",
                    ));
                }
            }
        }
        for (i, e) in self.expect.iter().enumerate() {
            let f = |k: &str| format!("expect[{i}].{k}");
            match e {
                Expectation::Alert { after, .. } | Expectation::Reconciled { after, .. } => {
                    if !faults.contains(after.as_str()) {
                        return Err(invalid(f("after"), format!("no injection {after}")));
                    }
                }
                Expectation::State {
                    strategy, after, ..
                } => {
                    if !strategies.contains(strategy) {
                        return Err(invalid(f("strategy"), format!("no strategy {strategy}")));
                    }
                    if !faults.contains(after.as_str()) {
                        return Err(invalid(f("after"), format!("no injection {after}")));
                    }
                }
                Expectation::NoAlert { from, to, .. } => {
                    if let (Some(a), Some(b)) = (from, to)
                        && a.as_std() >= b.as_std()
                    {
                        return Err(invalid(f("to"), "must be after `from`"));
                    }
                }
                Expectation::PnlImpact { .. } | Expectation::NoLostOrders => {}
            }
        }
        Ok(())
    }
}
