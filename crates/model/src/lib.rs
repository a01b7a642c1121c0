//! The tradestack domain model: assets and instruments, exact fixed-point
//! prices, quantities and amounts, integer-nanosecond time, and the events that
//! flow between services (orders, fills, trades, quotes, bars, signals, alerts).
//!
//! Everything here is pure data: no I/O, no clocks. JSON (for APIs) and the
//! versioned binary [`codec`] (for the bus and journals) both come from serde.

pub mod codec;
pub mod events;
pub mod fixed;
pub mod ids;
pub mod instrument;
pub mod time;

pub use events::{
    Alert, Bar, Event, Fill, Liquidity, Order, OrderStatus, OrderType, Quote, Severity, Side,
    Signal, TimeInForce, Trade,
};
pub use fixed::{Amount, FixedError, Price, Quantity, Rate};
pub use ids::{
    AccountId, AssetCode, ClientOrderId, EventId, InstrumentId, OrderId, StrategyId, TradeId,
};
pub use instrument::{
    Asset, AssetKind, Instrument, InstrumentKind, OptionRight, RuleViolation, assets_of,
};
pub use time::{Nanos, UnixNanos, civil_from_days, days_from_civil};
