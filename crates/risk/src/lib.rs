//! The risk monitor.
//!
//! - [`config`]: the limits, `[risk]` in the configuration file.
//! - [`monitor`]: pre-trade checks (it is the strategies' [`OrderGate`]),
//!   post-trade rules on a fixed cadence, trading states and alerts.
//! - [`state`]: ACTIVE, REDUCING and HALTED per strategy and account, with
//!   the audit trail of every change.
//! - [`alerts`]: deduplicated alerts, one per rule and subject.
//! - [`delivery`]: alerts sent to Alertmanager and Telegram, with retries.
//! - [`sim`]: the monitor watching a strategy session in simulated time.
//! - [`service`]: the monitor as a service watching the bus, and the
//!   strategy gate's link to it.
//!
//! [`OrderGate`]: tradestack_trading::OrderGate

pub mod alerts;
pub mod config;
pub mod delivery;
pub mod monitor;
pub mod service;
pub mod sim;
pub mod state;

pub use alerts::{AlertBook, AlertChange, Finding};
pub use config::{PreTradeLimits, RiskConfig, RuleLimits};
pub use delivery::{
    AlertmanagerTarget, DeliveryConfig, DeliveryError, DeliveryStats, Notifier, Receiver,
    RetryPolicy, TelegramTarget,
};
pub use monitor::{Evaluation, RiskMonitor, SettlementBreak};
pub use sim::{RiskEvent, RiskedSession};
pub use state::{ChangedBy, StateBook, Subject, TradingState, Transition};
