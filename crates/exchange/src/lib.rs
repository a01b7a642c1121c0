//! Exchange simulator: spot accounts and balances with reservations, one
//! matching-engine book per instrument, fees by tier, and (in later modules)
//! the journal, the APIs and the chaos hooks.
//!
//! [`Exchange`] is the deterministic core: it takes journaled [`Command`]s
//! stamped with a time and returns [`ExchangeEvent`]s, so the same journal
//! always rebuilds the same books and balances.

pub mod admin;
pub mod api;
pub mod auth;
pub mod bars;
pub mod binance;
pub mod chaos;
pub mod engine;
pub mod journal;
pub mod ledger;
pub mod margin;
pub mod metrics;
pub mod secrets;
pub mod sequencer;
pub mod service;
pub mod settings;
pub mod ws;

pub use engine::{
    Command, Exchange, ExchangeError, ExchangeEvent, ExchangeState, OpenOrder, OrderRef,
    PlaceOrder, Reply,
};
pub use journal::{FsyncPolicy, Journal, JournalEntry, JournalError, Recovered, Snapshot};
pub use ledger::{Balance, Insufficient, Ledger};
pub use metrics::ExchangeMetrics;
pub use sequencer::{
    Applied, ExchangeHandle, Executed, RecoveryReport, Sequencer, SequencerSettings, Unavailable,
};
pub use service::ExchangeService;
pub use settings::{AccountSeed, ExchangeSettings, FeeTier, JournalConfig, SettingsError};
