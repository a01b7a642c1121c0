//! The exchange's own metrics, in Prometheus conventions (base units,
//! `_total` counters, exponential latency buckets).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::time::Duration;

/// Labels of `orders_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrderLabels {
    /// Instrument.
    pub instrument: String,
    /// limit, market, stop, stop_limit.
    pub r#type: String,
    /// accepted or the reject code.
    pub outcome: String,
}

/// Labels of the per-instrument series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstrumentLabels {
    /// Instrument.
    pub instrument: String,
}

/// Labels of the book-depth gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepthLabels {
    /// Instrument.
    pub instrument: String,
    /// bid or ask.
    pub side: String,
}

/// Every exchange metric.
#[derive(Clone)]
pub struct ExchangeMetrics {
    /// Orders by instrument, type and outcome.
    pub orders: Family<OrderLabels, Counter>,
    /// Trades by instrument.
    pub trades: Family<InstrumentLabels, Counter>,
    /// Time to apply one command in the engine.
    pub matching_latency: Histogram,
    /// Journal fsync time.
    pub fsync_latency: Histogram,
    /// Resting orders per side.
    pub book_orders: Family<DepthLabels, Gauge>,
    /// Price levels per side.
    pub book_levels: Family<DepthLabels, Gauge>,
    /// Connected WebSocket clients.
    pub ws_clients: Gauge,
}

impl Default for ExchangeMetrics {
    fn default() -> Self {
        ExchangeMetrics {
            orders: Family::default(),
            trades: Family::default(),
            // 10 ns doubling to about 5 ms: the engine works in nanoseconds.
            matching_latency: Histogram::new(exponential_buckets(1e-8, 2.0, 20)),
            fsync_latency: Histogram::new(tradestack_telemetry::metrics::latency_buckets()),
            book_orders: Family::default(),
            book_levels: Family::default(),
            ws_clients: Gauge::default(),
        }
    }
}

impl ExchangeMetrics {
    /// Registers every metric with the service's registry.
    pub fn register(&self, m: &tradestack_telemetry::metrics::Metrics) {
        m.register("orders", "Orders received, by outcome", self.orders.clone());
        m.register("trades", "Trades executed", self.trades.clone());
        m.register_seconds(
            "matching_latency",
            "Time to apply one command in the matching engine",
            self.matching_latency.clone(),
        );
        m.register_seconds(
            "journal_fsync_latency",
            "Journal fsync time per group commit",
            self.fsync_latency.clone(),
        );
        m.register(
            "book_orders",
            "Resting orders per book side",
            self.book_orders.clone(),
        );
        m.register(
            "book_levels",
            "Price levels per book side",
            self.book_levels.clone(),
        );
        m.register(
            "websocket_clients",
            "Connected WebSocket clients",
            self.ws_clients.clone(),
        );
    }

    /// Records one fsync.
    pub fn observe_fsync(&self, took: Duration) {
        self.fsync_latency.observe(took.as_secs_f64());
    }
}

impl ExchangeMetrics {
    /// Counts one applied command and its trades.
    pub fn observe_command(
        &self,
        cmd: &crate::engine::Command,
        result: &Result<crate::engine::Reply, crate::engine::ExchangeError>,
        events: &[crate::engine::ExchangeEvent],
        took: Duration,
    ) {
        self.matching_latency.observe(took.as_secs_f64());
        if let crate::engine::Command::Place(p) = cmd {
            let outcome = match result {
                Ok(_) => "accepted",
                Err(e) => e.code(),
            };
            self.orders
                .get_or_create(&OrderLabels {
                    instrument: p.instrument.to_string(),
                    r#type: order_type_name(p.order_type).into(),
                    outcome: outcome.into(),
                })
                .inc();
        }
        for e in events {
            if let crate::engine::ExchangeEvent::Trade(t) = e {
                self.trades
                    .get_or_create(&InstrumentLabels {
                        instrument: t.instrument.to_string(),
                    })
                    .inc();
            }
        }
    }

    /// Sets the depth gauges from the books.
    pub fn observe_books(&self, ex: &crate::engine::Exchange) {
        for ins in ex.instruments() {
            let Some(book) = ex.book(&ins.id) else {
                continue;
            };
            for (side, name) in [
                (tradestack_model::Side::Buy, "bid"),
                (tradestack_model::Side::Sell, "ask"),
            ] {
                let labels = DepthLabels {
                    instrument: ins.id.to_string(),
                    side: name.into(),
                };
                let (mut levels, mut orders) = (0i64, 0i64);
                for l in book.levels(side) {
                    levels += 1;
                    orders += i64::from(l.orders);
                }
                self.book_levels.get_or_create(&labels).set(levels);
                self.book_orders.get_or_create(&labels).set(orders);
            }
        }
    }
}

/// The snake_case name of an order type.
pub fn order_type_name(t: tradestack_model::OrderType) -> &'static str {
    match t {
        tradestack_model::OrderType::Limit => "limit",
        tradestack_model::OrderType::Market => "market",
        tradestack_model::OrderType::Stop => "stop",
        tradestack_model::OrderType::StopLimit => "stop_limit",
    }
}
