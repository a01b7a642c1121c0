//! The strategy service's metrics, in Prometheus conventions.
//!
//! Positions and P&L are exact in the engine and the API; the gauges carry
//! them as floats because that is what the exposition format has.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::AtomicU64;
use tradestack_model::{Amount, Nanos, StrategyId};

use crate::engine::StrategyEngine;
use crate::live::DriverStats;

/// Labels of the per-position gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PositionLabels {
    /// The strategy (empty for fills of no strategy).
    pub strategy: String,
    /// Its account.
    pub account: String,
    /// The instrument.
    pub instrument: String,
}

/// Labels of the P&L gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PnlLabels {
    /// The strategy.
    pub strategy: String,
    /// Its account.
    pub account: String,
    /// The instrument.
    pub instrument: String,
    /// The asset P&L is counted in (the quote asset).
    pub asset: String,
    /// `realized`, `unrealized_mid` or `unrealized_reference`.
    pub kind: String,
}

/// Labels of the per-strategy counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StrategyLabels {
    /// The strategy.
    pub strategy: String,
}

/// Labels of `trading_orders_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrderLabels {
    /// The strategy.
    pub strategy: String,
    /// `sent`, `failed`, `refused_<code>` or `gated_<rule>`.
    pub outcome: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every strategy-service metric; cheap to clone.
#[derive(Clone)]
pub struct TradingMetrics {
    position: Family<PositionLabels, FloatGauge>,
    pnl: Family<PnlLabels, FloatGauge>,
    orders: Family<OrderLabels, Counter>,
    fills: Family<StrategyLabels, Counter>,
    venue_latency: Histogram,
    gaps: Gauge,
}

impl Default for TradingMetrics {
    fn default() -> Self {
        TradingMetrics {
            position: Family::default(),
            pnl: Family::default(),
            orders: Family::default(),
            fills: Family::default(),
            venue_latency: tradestack_telemetry::metrics::latency_histogram(),
            gaps: Gauge::default(),
        }
    }
}

fn float(a: Amount) -> f64 {
    a.raw() as f64 / tradestack_model::fixed::SCALE as f64
}

impl TradingMetrics {
    /// Registers every metric with the service's registry.
    pub fn register(&self, m: &tradestack_telemetry::Metrics) {
        m.register(
            "trading_position",
            "Signed position per strategy and instrument, in contracts (base units for spot)",
            self.position.clone(),
        );
        m.register(
            "trading_pnl",
            "P&L per strategy and instrument, in the quote asset",
            self.pnl.clone(),
        );
        m.register(
            "trading_orders",
            "Strategy orders by outcome",
            self.orders.clone(),
        );
        m.register("trading_fills", "Strategy fills", self.fills.clone());
        m.register_seconds(
            "trading_venue_latency",
            "Round trip of one request to the venue",
            self.venue_latency.clone(),
        );
        m.register(
            "trading_stream_gaps",
            "Times the venue's update stream lost updates since start",
            self.gaps.clone(),
        );
    }

    /// Counts one order outcome.
    pub fn order(&self, strategy: &StrategyId, outcome: &str) {
        self.orders
            .get_or_create(&OrderLabels {
                strategy: strategy.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one fill.
    pub fn fill(&self, strategy: &StrategyId) {
        self.fills
            .get_or_create(&StrategyLabels {
                strategy: strategy.to_string(),
            })
            .inc();
    }

    /// Records one venue round trip.
    pub fn venue_latency(&self, latency: Nanos) {
        self.venue_latency.observe(latency.0 as f64 / 1e9);
    }

    /// Sets the position and P&L gauges from the engine.
    pub fn refresh(&self, engine: &StrategyEngine, stats: DriverStats) {
        self.gaps.set(i64::try_from(stats.gaps).unwrap_or(i64::MAX));
        for v in engine.portfolio().views(None) {
            let strategy = v
                .strategy
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            self.position
                .get_or_create(&PositionLabels {
                    strategy: strategy.clone(),
                    account: v.account.to_string(),
                    instrument: v.instrument.to_string(),
                })
                .set(float(v.quantity));
            let kinds = [
                ("realized", Some(v.realized_pnl)),
                ("unrealized_mid", v.unrealized_mid),
                ("unrealized_reference", v.unrealized_reference),
            ];
            for (kind, value) in kinds {
                let Some(value) = value else { continue };
                self.pnl
                    .get_or_create(&PnlLabels {
                        strategy: strategy.clone(),
                        account: v.account.to_string(),
                        instrument: v.instrument.to_string(),
                        asset: v.pnl_asset.to_string(),
                        kind: kind.to_string(),
                    })
                    .set(float(value));
            }
        }
    }
}
