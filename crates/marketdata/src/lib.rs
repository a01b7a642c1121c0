//! tradestack market data: where prices come from when no real venue is attached, and how
//! recorded venue data is turned back into model events.
//!
//! - [`reference`](mod@crate::reference): a seeded multi-asset reference-price process
//!   (correlated geometric Brownian motion with Merton jumps, Ornstein–Uhlenbeck stablecoins)
//!   with scenario overlays (coordinated shocks, depegs, volatility regimes), read as
//!   fixed-point prices.
//! - [`disruption`]: a deterministic feed-fault injector (gaps, stale prices, latency spikes,
//!   duplicates, reordering, corrupted prices) that logs everything it did.
//! - [`bars`]: exact OHLCV bars from trades at UTC-aligned intervals, with a documented
//!   late-trade policy.
//! - [`replay`]: parsers for the recorded files in `shared/data` (Tardis trades and quotes,
//!   Binance klines and depth, FTX bars, LOBSTER messages) and a pure replay-pacing helper.
//!
//! - [`feed`]: the normalized market-data feed and its seeded fault gate.
//! - [`agents`] and [`sim`]: ABIDES-style trading agents (market makers, noise, momentum and
//!   value traders) that trade on the exchange core, driven in simulated time.
//!
//! All of the above is pure and synchronous: time is passed in by the caller (integer
//! nanoseconds), randomness comes from [`tradestack_kernel::DetRng`], and the only I/O is
//! reading the files handed to the replay parsers. Floats live only inside the stochastic
//! model; everything that leaves this crate is a fixed-point [`tradestack_model::Price`],
//! `Quantity` or `Amount`.
//!
//! The async edges are thin: [`live`] (the agents on the running exchange, steered through
//! [`live::SimControl`]), [`gateway`] (publishing the feed), [`replayer`] (replay jobs),
//! [`recorder`] and [`history`] (the store), [`api`] (the scenario hooks over HTTP) and
//! [`service`], which wires them together.

#![warn(missing_docs)]

pub mod agents;
pub mod api;
pub mod bars;
pub mod disruption;
pub mod feed;
pub mod gateway;
pub mod history;
pub mod live;
pub mod recorder;
pub mod reference;
pub mod replay;
pub mod replayer;
pub mod service;
pub mod sim;

mod util;

pub use bars::{BarBuilder, BarConfig, BarError, BarEvent, BarStats, LatePolicy};
pub use disruption::{
    Action, CorruptionKind, Delivered, DisruptionConfig, DisruptionError, DisruptionRecord,
    Disruptor, Tick,
};
pub use reference::{
    AssetConfig, AssetModel, Overlay, OverlayId, ReferenceConfig, ReferenceError, ReferenceProcess,
};
pub use replay::{Parsed, ReplayError, RowError, Speed, SymbolMap};
