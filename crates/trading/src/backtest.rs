//! Backtests: one strategy over recorded market data, in simulated time.
//!
//! # Fill model
//!
//! The strategy trades on the real exchange core, so its orders meet the
//! same matching, fees and balance checks as live. The recorded market is
//! put in front of it by a replay account with unlimited funds:
//!
//! - each recorded quote (top of book) replaces the replay account's bid
//!   and ask, at the recorded prices and sizes, so marketable orders fill
//!   against what was really offered;
//! - each recorded trade is sent as an immediate-or-cancel order of the
//!   recorded aggressor, size and price, so the strategy's resting orders
//!   fill when the tape trades at or through them. At one price, time
//!   priority decides: the replay quote re-enters the queue whenever the
//!   recorded top changes, so a strategy order placed earlier is ahead of it;
//! - bar-only data (klines) quotes one tick either side of each close, with
//!   the bar's volume, and delivers the bar.
//!
//! Everything the strategy sees comes from the recording (quotes, trades,
//! bars, plus 1-minute bars built from the trades), and time is the
//! recording's, so a backtest is a pure function of its files and settings.

use std::collections::BTreeMap;

use serde::Serialize;
use tradestack_exchange::{
    Command, Exchange, ExchangeEvent, ExchangeSettings, OrderRef, PlaceOrder,
};
use tradestack_marketdata::bars::{BarBuilder, BarConfig};
use tradestack_marketdata::feed::{FeedEvent, FeedMessage};
use tradestack_model::{
    AccountId, Amount, AssetCode, ClientOrderId, Instrument, InstrumentId, Nanos, OrderType, Price,
    Quantity, Quote, Side, TimeInForce, UnixNanos,
};

use crate::engine::StrategyEngine;
use crate::session::to_command;
use crate::strategies::StrategyConfig;
use crate::strategy::Action;

/// The account that stands for the recorded market.
pub const REPLAY_ACCOUNT: &str = "backtest-replay";

/// Backtest errors.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The strategy trades an instrument the data does not have.
    #[error("the data has no {instrument}; it has {available}")]
    NoData {
        /// Instrument asked for.
        instrument: String,
        /// What the data has.
        available: String,
    },
    /// Nothing to replay in the window.
    #[error("no market data between --from and --to")]
    Empty,
    /// The strategy could not be registered.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

/// What a backtest runs.
#[derive(Clone, Debug)]
pub struct BacktestSpec {
    /// The strategy.
    pub strategy: StrategyConfig,
    /// First event time (inclusive).
    pub from: Option<UnixNanos>,
    /// Last event time (exclusive).
    pub to: Option<UnixNanos>,
    /// What the strategy account holds at the start, in every asset.
    pub funding: Amount,
    /// Equity-curve sampling interval.
    pub sample_every: Nanos,
}

/// One point of the equity curve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EquityPoint {
    /// Time.
    pub ts: UnixNanos,
    /// Realized + unrealized (at the mid) − fees, in the quote asset.
    pub pnl: Amount,
}

/// The result of a backtest. Field order is stable; JSON is written as is.
#[derive(Clone, Debug, Serialize)]
pub struct BacktestReport {
    /// Strategy id.
    pub strategy: String,
    /// Strategy kind.
    pub kind: String,
    /// First event replayed.
    pub from: UnixNanos,
    /// Last event replayed.
    pub to: UnixNanos,
    /// Market events replayed.
    pub events: u64,
    /// The asset P&L is counted in.
    pub pnl_asset: AssetCode,
    /// Final P&L: realized + unrealized − fees.
    pub pnl: Amount,
    /// Realized P&L.
    pub realized: Amount,
    /// Unrealized P&L at the last mid.
    pub unrealized: Amount,
    /// Fees paid in the P&L asset (negative: rebates).
    pub fees: Amount,
    /// Largest fall of the P&L from a previous peak.
    pub max_drawdown: Amount,
    /// `max_drawdown` as a share of the starting funding, in basis points.
    pub max_drawdown_bps: i64,
    /// Annualised Sharpe ratio of the per-sample P&L changes over the funding (0 when flat).
    pub sharpe: f64,
    /// Value traded, both sides.
    pub turnover: Amount,
    /// Orders submitted.
    pub orders: u64,
    /// Orders with at least one fill.
    pub orders_filled: u64,
    /// `orders_filled / orders`, in basis points.
    pub fill_ratio_bps: u64,
    /// Fills.
    pub fills: u64,
    /// Final position per instrument (signed).
    pub positions: BTreeMap<InstrumentId, Amount>,
    /// The P&L over time.
    pub equity: Vec<EquityPoint>,
}

/// Instruments for the symbols in `events`: spot, base and quote from the
/// symbol, tick and lot from the finest decimals seen (any size, 10⁻⁸, when
/// the data has no quantities, as with bars).
pub fn infer_instruments(events: &[FeedMessage]) -> Vec<Instrument> {
    // (tick, lot); a lot of 0 until a quantity is seen.
    let mut seen: BTreeMap<InstrumentId, (i64, i64)> = BTreeMap::new();
    let mut note = |id: &InstrumentId, prices: &[Price], qtys: &[Quantity]| {
        let e = seen.entry(id.clone()).or_insert((100_000_000, 0));
        for p in prices {
            e.0 = finest(e.0, p.raw());
        }
        for q in qtys {
            e.1 = finest(if e.1 == 0 { 100_000_000 } else { e.1 }, q.raw());
        }
    };
    for m in events {
        match &m.event {
            FeedEvent::Trade(t) => note(&t.instrument, &[t.price], &[t.quantity]),
            FeedEvent::Quote(q) => note(&q.instrument, &[q.bid, q.ask], &[q.bid_size, q.ask_size]),
            FeedEvent::Bar(b) => note(&b.instrument, &[b.open, b.high, b.low, b.close], &[]),
            FeedEvent::Book(b) => {
                let prices: Vec<Price> = b.bids.iter().chain(b.asks.iter()).map(|l| l.0).collect();
                note(&b.instrument, &prices, &[]);
            }
        }
    }
    seen.into_iter()
        .map(|(id, (tick, lot))| {
            let (base, quote) = match id.as_str().split_once('-') {
                Some((b, "PERP")) => (b.to_string(), "USD".to_string()),
                Some((b, q)) => (b.to_string(), q.to_string()),
                None => (id.to_string(), "USD".to_string()),
            };
            let mut i = Instrument::spot(
                id.as_str(),
                &base,
                &quote,
                Price::from_raw(tick),
                Quantity::from_raw(lot.max(1)),
            );
            i.max_qty = Quantity::from_raw(i64::MAX / 4);
            i
        })
        .collect()
}

/// The largest power of ten (in raw units, at most one whole unit) that divides `raw`.
fn finest(current: i64, raw: i64) -> i64 {
    let mut step = current;
    while step > 1 && raw % step != 0 {
        step /= 10;
    }
    step
}

struct Replay {
    exchange: Exchange,
    engine: StrategyEngine,
    account: AccountId,
    replay: AccountId,
    quotes: BTreeMap<InstrumentId, [Option<ClientOrderId>; 2]>,
    seq: u64,
    now: UnixNanos,
    bars: BarBuilder,
    filled_orders: std::collections::BTreeSet<ClientOrderId>,
}

impl Replay {
    fn apply(&mut self, cmd: &Command) -> Vec<ExchangeEvent> {
        let mut events = Vec::new();
        let _ = self.exchange.apply(cmd, self.now, &mut events);
        events
    }

    /// The replay account's quote on one side, replacing its previous one.
    fn replace_quote(
        &mut self,
        instrument: &InstrumentId,
        side: Side,
        price: Price,
        size: Quantity,
    ) {
        let k = if side == Side::Buy { 0 } else { 1 };
        let old = self.quotes.entry(instrument.clone()).or_default()[k].take();
        let mut events = Vec::new();
        if let Some(old) = old {
            events.extend(self.apply(&Command::Cancel {
                account: self.replay.clone(),
                instrument: instrument.clone(),
                order: OrderRef::Client(old),
            }));
        }
        if !size.is_zero() && price.raw() > 0 {
            self.seq += 1;
            let id = ClientOrderId::new(format!("replay-{}", self.seq));
            events.extend(self.apply(&place(
                &self.replay,
                instrument,
                side,
                price,
                size,
                Some(id.clone()),
            )));
            self.quotes.entry(instrument.clone()).or_default()[k] = Some(id);
        }
        self.feed(events);
    }

    fn on_quote(&mut self, q: &Quote) {
        self.replace_quote(&q.instrument, Side::Buy, q.bid, q.bid_size);
        self.replace_quote(&q.instrument, Side::Sell, q.ask, q.ask_size);
        let out = self.engine.on_quote(q, self.now);
        self.execute(out);
    }

    fn feed(&mut self, events: Vec<ExchangeEvent>) {
        for e in events {
            if let ExchangeEvent::Fill(f) = &e
                && f.account == self.account
            {
                self.filled_orders.insert(f.client_order_id.clone());
            }
            // Public prints of the replay come from the recording instead.
            if matches!(e, ExchangeEvent::Trade(_)) {
                continue;
            }
            let out = self.engine.on_exchange_event(&e, self.now);
            self.execute(out);
        }
    }

    fn execute(&mut self, out: Vec<crate::engine::Outgoing>) {
        for o in out {
            let mut events = Vec::new();
            if self
                .exchange
                .apply(&to_command(&o), self.now, &mut events)
                .is_err()
                && let Action::Submit(req) = &o.action
            {
                let out = self.engine.on_refused(&req.client_order_id, self.now);
                self.execute(out);
            }
            self.feed(events);
        }
    }

    fn advance(&mut self, t: UnixNanos) {
        while let Some(due) = self.engine.next_timer().filter(|d| *d <= t) {
            self.now = due.max(self.now);
            let out = self.engine.fire_timers(self.now);
            self.execute(out);
        }
        self.now = t.max(self.now);
        for b in self.bars.advance_to(self.now) {
            let out = self.engine.on_bar(b.bar(), self.now);
            self.execute(out);
        }
    }
}

/// A limit order of the replay account: a resting quote (with its id) or
/// an immediate-or-cancel print (without).
fn place(
    account: &AccountId,
    instrument: &InstrumentId,
    side: Side,
    price: Price,
    quantity: Quantity,
    client_order_id: Option<ClientOrderId>,
) -> Command {
    let time_in_force = if client_order_id.is_some() {
        TimeInForce::Gtc
    } else {
        TimeInForce::Ioc
    };
    Command::Place(PlaceOrder {
        account: account.clone(),
        instrument: instrument.clone(),
        client_order_id,
        side,
        order_type: OrderType::Limit,
        time_in_force,
        price: Some(price),
        stop_price: None,
        quantity,
        expire_at: None,
        stp: None,
    })
}

/// Runs `spec` over `events` (time-ordered, as [`tradestack_marketdata::replay::load`] gives them).
pub fn run(spec: &BacktestSpec, events: &[FeedMessage]) -> Result<BacktestReport, BacktestError> {
    let in_window =
        |ts: UnixNanos| spec.from.is_none_or(|f| ts >= f) && spec.to.is_none_or(|t| ts < t);
    let events: Vec<&FeedMessage> = events.iter().filter(|m| in_window(event_ts(m))).collect();
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Err(BacktestError::Empty);
    };
    let (from, to) = (event_ts(first), event_ts(last));
    let owned: Vec<FeedMessage> = events.iter().map(|m| (*m).clone()).collect();
    let instruments = infer_instruments(&owned);
    for id in spec.strategy.params.instruments() {
        if !instruments.iter().any(|i| i.id == id) {
            return Err(BacktestError::NoData {
                instrument: id.to_string(),
                available: instruments
                    .iter()
                    .map(|i| i.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let settings = ExchangeSettings {
        instruments: instruments.clone(),
        ..ExchangeSettings::default()
    };
    let mut exchange = Exchange::new(settings);
    let account = spec.strategy.account.clone();
    let replay = AccountId::new(REPLAY_ACCOUNT);
    let assets = tradestack_model::assets_of(&instruments);
    let mut ignored = Vec::new();
    for asset in &assets {
        for (who, amount) in [
            (&account, spec.funding),
            (&replay, Amount::from_raw(i128::from(i64::MAX) * 1_000_000)),
        ] {
            let _ = exchange.apply(
                &Command::Deposit {
                    account: who.clone(),
                    asset: asset.clone(),
                    amount,
                },
                from,
                &mut ignored,
            );
        }
    }
    let mut engine = StrategyEngine::new(instruments.iter());
    engine.add(
        spec.strategy.id.clone(),
        account.clone(),
        spec.strategy.params.build(),
    )?;
    let mut r = Replay {
        exchange,
        engine,
        account,
        replay,
        quotes: BTreeMap::new(),
        seq: 0,
        now: from,
        bars: BarBuilder::new(&BarConfig {
            intervals: vec![Nanos::MINUTE],
            ..BarConfig::default()
        })
        .expect("one positive interval"),
        filled_orders: Default::default(),
    };
    let out = r.engine.start(from);
    r.execute(out);

    let sample = Nanos(spec.sample_every.0.max(1));
    let mut next_sample = from;
    let mut equity = Vec::new();
    let pnl_asset = spec
        .strategy
        .params
        .instruments()
        .first()
        .and_then(|id| instruments.iter().find(|i| &i.id == id))
        .map(|i| i.quote.clone())
        .unwrap_or_else(|| AssetCode::new("USD"));
    let mut count = 0u64;
    for m in &events {
        let ts = event_ts(m);
        while next_sample <= ts {
            r.advance(next_sample);
            equity.push(EquityPoint {
                ts: next_sample,
                pnl: pnl(&r.engine, &pnl_asset).0,
            });
            next_sample += sample;
        }
        r.advance(ts);
        count += 1;
        match &m.event {
            FeedEvent::Quote(q) => r.on_quote(q),
            FeedEvent::Trade(t) => {
                let replay = r.replay.clone();
                let events = r.apply(&place(
                    &replay,
                    &t.instrument,
                    t.aggressor,
                    t.price,
                    t.quantity,
                    None,
                ));
                r.feed(events);
                if let Ok(closed) = r.bars.on_trade(t) {
                    for b in closed {
                        let out = r.engine.on_bar(b.bar(), r.now);
                        r.execute(out);
                    }
                }
                let out = r.engine.on_trade(t, r.now);
                r.execute(out);
            }
            FeedEvent::Bar(b) => {
                let tick = instruments
                    .iter()
                    .find(|i| i.id == b.instrument)
                    .map(|i| i.tick_size)
                    .unwrap_or(Price::from_raw(1));
                let size = if b.volume.is_zero() {
                    Quantity::from_units(1_000)
                } else {
                    b.volume
                };
                let q = Quote {
                    instrument: b.instrument.clone(),
                    bid: Price::from_raw((b.close.raw() - tick.raw()).max(tick.raw())),
                    bid_size: size,
                    ask: Price::from_raw(b.close.raw() + tick.raw()),
                    ask_size: size,
                    ts,
                };
                r.on_quote(&q);
                let out = r.engine.on_bar(b, r.now);
                r.execute(out);
            }
            FeedEvent::Book(_) => {}
        }
    }
    r.advance(to);
    let out = r.engine.stop(to);
    r.execute(out);
    let (total, realized, unrealized, fees) = pnl(&r.engine, &pnl_asset);
    equity.push(EquityPoint { ts: to, pnl: total });
    let stats = r.engine.stats(&spec.strategy.id).unwrap_or_default();
    let views = r.engine.portfolio().views(None);
    let turnover = views
        .iter()
        .filter(|v| v.pnl_asset == pnl_asset)
        .fold(Amount::ZERO, |a, v| a + v.turnover);
    let positions = views
        .iter()
        .map(|v| (v.instrument.clone(), v.quantity))
        .collect();
    let (max_drawdown, sharpe) = drawdown_and_sharpe(&equity, spec.funding, sample);
    let max_drawdown_bps = if spec.funding.raw() > 0 {
        i64::try_from(max_drawdown.raw() * 10_000 / spec.funding.raw()).unwrap_or(i64::MAX)
    } else {
        0
    };
    let orders_filled = r.filled_orders.len() as u64;
    Ok(BacktestReport {
        strategy: spec.strategy.id.to_string(),
        kind: spec.strategy.params.kind().to_string(),
        from,
        to,
        events: count,
        pnl_asset,
        pnl: total,
        realized,
        unrealized,
        fees,
        max_drawdown,
        max_drawdown_bps,
        sharpe,
        turnover,
        orders: stats.submitted,
        orders_filled,
        fill_ratio_bps: (orders_filled * 10_000)
            .checked_div(stats.submitted)
            .unwrap_or(0),
        fills: stats.fills,
        positions,
        equity,
    })
}

/// (total, realized, unrealized at the mid, fees) over every position whose
/// P&L is in `asset`.
fn pnl(engine: &StrategyEngine, asset: &AssetCode) -> (Amount, Amount, Amount, Amount) {
    let mut realized = Amount::ZERO;
    let mut unrealized = Amount::ZERO;
    let mut fees = Amount::ZERO;
    for v in engine.portfolio().views(None) {
        if &v.pnl_asset != asset {
            continue;
        }
        realized += v.realized_pnl;
        unrealized += v.unrealized_mid.unwrap_or(Amount::ZERO);
        fees += v.fees.get(asset).copied().unwrap_or(Amount::ZERO);
    }
    (realized + unrealized - fees, realized, unrealized, fees)
}

/// Largest peak-to-trough fall of the curve, and the annualised Sharpe
/// ratio of its per-sample changes relative to `capital`.
fn drawdown_and_sharpe(curve: &[EquityPoint], capital: Amount, sample: Nanos) -> (Amount, f64) {
    let mut peak = i128::MIN;
    let mut worst = 0i128;
    for p in curve {
        peak = peak.max(p.pnl.raw());
        worst = worst.max(peak - p.pnl.raw());
    }
    let returns: Vec<f64> = curve
        .windows(2)
        .map(|w| (w[1].pnl.raw() - w[0].pnl.raw()) as f64 / (capital.raw().max(1)) as f64)
        .collect();
    let n = returns.len() as f64;
    let sharpe = if returns.len() < 2 {
        0.0
    } else {
        let mean = returns.iter().sum::<f64>() / n;
        let var = returns.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (n - 1.0);
        let per_year = 365.0 * 86_400e9 / sample.0 as f64;
        if var > 0.0 {
            mean / var.sqrt() * per_year.sqrt()
        } else {
            0.0
        }
    };
    (Amount::from_raw(worst), sharpe)
}

fn event_ts(m: &FeedMessage) -> UnixNanos {
    match &m.event {
        FeedEvent::Trade(t) => t.ts,
        FeedEvent::Quote(q) => q.ts,
        // A bar is known when it closes.
        FeedEvent::Bar(b) => b.open_time + b.interval,
        FeedEvent::Book(b) => b.ts,
    }
}
