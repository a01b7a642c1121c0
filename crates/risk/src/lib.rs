//! The risk monitor.
//!
//! - [`config`]: the limits, `[risk]` in the configuration file.
//! - [`monitor`]: pre-trade checks (it is the strategies' [`OrderGate`]),
//!   post-trade rules on a fixed cadence, trading states and alerts.
//! - [`state`]: ACTIVE, REDUCING and HALTED per strategy and account, with
//!   the audit trail of every change.
//! - [`alerts`]: deduplicated alerts, one per rule and subject.
//! - [`sim`]: the monitor watching a strategy session in simulated time.
//!
//! [`OrderGate`]: tradestack_trading::OrderGate

pub mod alerts;
pub mod config;
pub mod monitor;
pub mod sim;
pub mod state;

pub use alerts::{AlertBook, AlertChange, Finding};
pub use config::{PreTradeLimits, RiskConfig, RuleLimits};
pub use monitor::{Evaluation, RiskMonitor, SettlementBreak};
pub use sim::{RiskEvent, RiskedSession};
pub use state::{ChangedBy, StateBook, Subject, TradingState, Transition};
