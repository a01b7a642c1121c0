//! The strategy engine.
//!
//! - [`strategy`]: the [`Strategy`] trait and the context strategies act
//!   through. Strategies are sans-I/O, so one implementation runs in
//!   simulated and real time, against the in-process exchange or a remote one.
//! - [`engine`]: routes events to strategies, keeps their orders and
//!   positions, and applies [`misbehaviour`] switched on at run time.
//! - [`gate`]: the pre-trade gate in the order path (a risk monitor implements it).
//! - [`strategies`]: the built-in strategies and their TOML configuration.
//! - [`portfolio`]: positions and P&L per account, strategy and
//!   instrument, exact, from fills.
//! - [`backtest`]: one strategy over recorded data, with the report.
//! - [`session`]: strategies beside the market simulator's agents on the
//!   exchange core, in simulated time.
//! - [`live`]: the same engine in real time, fed from the bus, trading
//!   through a [`venue`] (the exchange in this process, or a remote one
//!   over its API); [`service`] serves it as `tradestack serve strategy`.

pub mod backtest;
pub mod engine;
pub mod gate;
pub mod live;
pub mod metrics;
pub mod misbehaviour;
pub mod portfolio;
pub mod report;
pub mod service;
pub mod session;
pub mod strategies;
pub mod strategy;
pub mod venue;

pub use engine::{EngineError, Outgoing, StrategyEngine};
pub use gate::{OrderGate, Refusal};
pub use misbehaviour::Misbehaviour;
pub use portfolio::{Portfolio, PositionKey, PositionView};
pub use session::{Session, SessionConfig};
pub use strategies::{StrategyConfig, StrategyParams};
pub use strategy::{Action, Strategy, StrategyContext};
