//! Exchange simulator: spot accounts and balances with reservations, one
//! matching-engine book per instrument, fees by tier, and (in later modules)
//! the journal, the APIs and the chaos hooks.
//!
//! [`Exchange`] is the deterministic core: it takes journaled [`Command`]s
//! stamped with a time and returns [`ExchangeEvent`]s, so the same journal
//! always rebuilds the same books and balances.

pub mod engine;
pub mod ledger;
pub mod settings;

pub use engine::{
    Command, Exchange, ExchangeError, ExchangeEvent, ExchangeState, OpenOrder, OrderRef,
    PlaceOrder, Reply,
};
pub use ledger::{Balance, Insufficient, Ledger};
pub use settings::{AccountSeed, ExchangeSettings, FeeTier};
