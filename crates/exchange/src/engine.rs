//! [`Exchange`]: the deterministic core. Commands in, events out; books,
//! accounts and balances in memory. No I/O and no clock: the caller stamps
//! each command with its time, so replaying the journal rebuilds the exact
//! state.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tradestack_matching::{
    BookConfig, BookDelta, BookEvent, BookState, CancelReason, NewOrder, OrderBook, Owner,
    RejectReason, StpMode, TradeEvent,
};
use tradestack_model::{
    AccountId, Amount, AssetCode, ClientOrderId, Fill, Instrument, InstrumentId, Liquidity, Order,
    OrderId, OrderStatus, OrderType, Price, Quantity, Rate, Side, TimeInForce, Trade, UnixNanos,
};

use crate::ledger::{Balance, Insufficient, Ledger};
use crate::margin::Position;
use crate::settings::{ExchangeSettings, FeeTier};

/// How a command names an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderRef {
    /// The venue id.
    Id(OrderId),
    /// The client id.
    Client(ClientOrderId),
}

/// A new order as an account sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// Sender.
    pub account: AccountId,
    /// What to trade.
    pub instrument: InstrumentId,
    /// The client's id; one is made up when absent.
    pub client_order_id: Option<ClientOrderId>,
    /// Buy or sell.
    pub side: Side,
    /// Limit, market, stop or stop-limit.
    pub order_type: OrderType,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Limit price.
    pub price: Option<Price>,
    /// Trigger price.
    pub stop_price: Option<Price>,
    /// Quantity.
    pub quantity: Quantity,
    /// Expiry for GTD.
    pub expire_at: Option<UnixNanos>,
    /// Self-trade prevention; the account's default when absent.
    pub stp: Option<StpMode>,
}

/// Everything the exchange does, as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Enter an order.
    Place(PlaceOrder),
    /// Cancel one order.
    Cancel {
        /// Owner.
        account: AccountId,
        /// Instrument.
        instrument: InstrumentId,
        /// Which order.
        order: OrderRef,
    },
    /// Cancel all open orders of an account, on one instrument or all.
    CancelAll {
        /// Owner.
        account: AccountId,
        /// One instrument, or all.
        instrument: Option<InstrumentId>,
    },
    /// Change price and/or open quantity.
    Amend {
        /// Owner.
        account: AccountId,
        /// Instrument.
        instrument: InstrumentId,
        /// Which order.
        order: OrderRef,
        /// New price.
        price: Option<Price>,
        /// New open quantity.
        quantity: Option<Quantity>,
    },
    /// Credit an account (opening it with the default tier if new).
    Deposit {
        /// Account.
        account: AccountId,
        /// Asset.
        asset: AssetCode,
        /// Amount, positive.
        amount: Amount,
    },
    /// Debit an account's free balance.
    Withdraw {
        /// Account.
        account: AccountId,
        /// Asset.
        asset: AssetCode,
        /// Amount, positive.
        amount: Amount,
    },
    /// Expire every GTD order due at the command's time.
    Expire,
    /// Perpetuals: pay funding at the mark's premium over `index`.
    Funding {
        /// The perpetual.
        instrument: InstrumentId,
        /// The index (spot reference) price.
        index: Price,
    },
    /// Perpetuals: a new index price; positions under maintenance margin at
    /// the mark price are liquidated.
    Mark {
        /// The perpetual.
        instrument: InstrumentId,
        /// The index (spot reference) price.
        index: Price,
    },
    /// Chaos: let incoming orders fill only this share (bps; 10,000 = all)
    /// on one instrument or all.
    SetFillCap {
        /// One instrument, or all.
        instrument: Option<InstrumentId>,
        /// Basis points of an order that may fill on arrival.
        bps: u32,
    },
}

/// What the exchange tells the rest of the system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExchangeEvent {
    /// An order's new state.
    Order(Order),
    /// One side of a trade.
    Fill(Fill),
    /// A public trade.
    Trade(Trade),
    /// A change of a price level.
    Book {
        /// Instrument.
        instrument: InstrumentId,
        /// The change.
        delta: BookDelta,
    },
    /// A funding payment on a position (positive: received).
    Funding {
        /// Account.
        account: AccountId,
        /// Perpetual.
        instrument: InstrumentId,
        /// The rate applied.
        rate: Rate,
        /// Amount received (negative: paid).
        amount: Amount,
    },
    /// A position after a change.
    Position {
        /// Account.
        account: AccountId,
        /// Perpetual.
        instrument: InstrumentId,
        /// The position now.
        position: Position,
    },
    /// A position was liquidated at the mark price.
    Liquidated {
        /// Account.
        account: AccountId,
        /// Perpetual.
        instrument: InstrumentId,
        /// Mark price that triggered it.
        mark: Price,
    },
    /// A balance after a change.
    Balance {
        /// Account.
        account: AccountId,
        /// Asset.
        asset: AssetCode,
        /// The balance now.
        balance: Balance,
    },
}

/// Why a command was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// No such instrument.
    #[error("unknown instrument {0}")]
    UnknownInstrument(InstrumentId),
    /// No such account.
    #[error("unknown account {0}")]
    UnknownAccount(AccountId),
    /// No such open order.
    #[error("unknown order")]
    UnknownOrder,
    /// The client order id is in use by an open order.
    #[error("client order id {0} is already in use")]
    DuplicateClientOrderId(ClientOrderId),
    /// Not enough funds to reserve.
    #[error(transparent)]
    InsufficientFunds(#[from] Insufficient),
    /// An amount that must be positive was not.
    #[error("amount must be positive")]
    NonPositiveAmount,
    /// The book refused it.
    #[error("{0}")]
    Rejected(RejectReason),
    /// A perpetuals command on an instrument that is not one.
    #[error("{0} is not a perpetual")]
    NotPerpetual(InstrumentId),
}

impl ExchangeError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ExchangeError::UnknownInstrument(_) => "unknown_instrument",
            ExchangeError::UnknownAccount(_) => "unknown_account",
            ExchangeError::UnknownOrder => "unknown_order",
            ExchangeError::DuplicateClientOrderId(_) => "duplicate_client_order_id",
            ExchangeError::InsufficientFunds(_) => "insufficient_funds",
            ExchangeError::NonPositiveAmount => "non_positive_amount",
            ExchangeError::Rejected(r) => r.code(),
            ExchangeError::NotPerpetual(_) => "not_perpetual",
        }
    }
}

/// The result of a command that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The order concerned, after the command (and its fills).
    Order(Order, Vec<Fill>),
    /// Orders cancelled by a cancel-all.
    Cancelled(Vec<Order>),
    /// A balance after a deposit or withdrawal.
    Balance(Balance),
    /// Done, nothing to report.
    Done,
}

/// An account's trading settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    /// Compact number used by the books.
    pub owner: Owner,
    /// Fee tier.
    pub tier: String,
    /// Default self-trade prevention.
    pub stp: StpMode,
}

/// An open order with its reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenOrder {
    /// The order as clients see it.
    pub order: Order,
    /// Quantity still open (resting or waiting for a trigger).
    pub leaves: Quantity,
    /// The asset reserved: quote for buys, base for sells.
    pub reserve_asset: AssetCode,
    /// What is still reserved for the open quantity.
    pub reserved: Amount,
    /// The price the reservation of a buy was computed at.
    pub reserve_price: Price,
    /// The fee rate its reservation covers.
    pub fee_reserve_rate: Rate,
    /// Quote value filled so far (Binance's `cummulativeQuoteQty`).
    pub cum_quote: Amount,
}

/// One instrument's market.
struct Market {
    instrument: Instrument,
    book: OrderBook,
    /// Contract size and settle asset of a perpetual.
    perp: Option<(Quantity, AssetCode)>,
}

fn perp_of(i: &Instrument) -> Option<(Quantity, AssetCode)> {
    match &i.kind {
        tradestack_model::InstrumentKind::Perpetual {
            contract_size,
            settle,
        } => Some((*contract_size, settle.clone())),
        _ => None,
    }
}

/// The exchange's whole state, for snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeState {
    /// Every book.
    pub books: Vec<(Instrument, BookState)>,
    /// Accounts.
    pub accounts: BTreeMap<AccountId, AccountState>,
    /// Balances.
    pub ledger: Ledger,
    /// Open orders, by id.
    pub open: BTreeMap<OrderId, OpenOrder>,
    /// Next venue order id.
    pub next_order_id: u64,
    /// Perpetual positions.
    pub positions: BTreeMap<(AccountId, InstrumentId), Position>,
    /// The insurance fund (negative once it has covered more losses than
    /// it collected).
    pub insurance: Amount,
}

/// The exchange core.
pub struct Exchange {
    settings: ExchangeSettings,
    markets: BTreeMap<InstrumentId, Market>,
    accounts: BTreeMap<AccountId, AccountState>,
    owners: Vec<AccountId>,
    ledger: Ledger,
    open: HashMap<OrderId, OpenOrder>,
    client_ids: HashMap<(AccountId, ClientOrderId), OrderId>,
    next_order_id: u64,
    scratch: Vec<BookEvent>,
    touched: Vec<(AccountId, AssetCode)>,
    positions: BTreeMap<(AccountId, InstrumentId), Position>,
    insurance: Amount,
    /// Orders entered by liquidation: they reserve nothing.
    liquidating: bool,
    /// Positions changed by the command being applied.
    position_events: Vec<(AccountId, InstrumentId, Position)>,
}

impl Exchange {
    /// An exchange with the configured instruments and seeded accounts.
    pub fn new(settings: ExchangeSettings) -> Self {
        let config = BookConfig {
            market_band_bps: settings.market_band_bps,
            ..BookConfig::default()
        };
        let markets = settings
            .instruments
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    Market {
                        instrument: i.clone(),
                        book: OrderBook::new(i.clone(), config),
                        perp: perp_of(i),
                    },
                )
            })
            .collect();
        let mut ex = Exchange {
            settings: settings.clone(),
            markets,
            accounts: BTreeMap::new(),
            owners: Vec::new(),
            ledger: Ledger::default(),
            open: HashMap::new(),
            client_ids: HashMap::new(),
            next_order_id: 1,
            scratch: Vec::with_capacity(256),
            touched: Vec::new(),
            positions: BTreeMap::new(),
            insurance: Amount::ZERO,
            liquidating: false,
            position_events: Vec::new(),
        };
        for seed in &settings.accounts {
            ex.open_account(&seed.id, &seed.tier, seed.stp);
            for (asset, amount) in &seed.balances {
                ex.ledger.credit(&seed.id, asset, *amount);
            }
        }
        ex
    }

    /// Rebuilds an exchange from a snapshot.
    pub fn restore(settings: ExchangeSettings, state: ExchangeState) -> Self {
        let mut ex = Exchange::new(ExchangeSettings {
            accounts: Vec::new(),
            ..settings
        });
        for (instrument, book) in &state.books {
            ex.markets.insert(
                instrument.id.clone(),
                Market {
                    instrument: instrument.clone(),
                    book: OrderBook::import(instrument.clone(), book),
                    perp: perp_of(instrument),
                },
            );
        }
        let mut owners: Vec<(Owner, AccountId)> = state
            .accounts
            .iter()
            .map(|(id, a)| (a.owner, id.clone()))
            .collect();
        owners.sort();
        ex.owners = owners.into_iter().map(|(_, id)| id).collect();
        ex.accounts = state.accounts;
        ex.ledger = state.ledger;
        for (id, o) in state.open {
            ex.client_ids.insert(
                (o.order.account.clone(), o.order.client_order_id.clone()),
                id,
            );
            ex.open.insert(id, o);
        }
        ex.next_order_id = state.next_order_id;
        ex.positions = state.positions;
        ex.insurance = state.insurance;
        ex
    }

    /// The whole state, for a snapshot.
    pub fn export(&self) -> ExchangeState {
        ExchangeState {
            books: self
                .markets
                .values()
                .map(|m| (m.instrument.clone(), m.book.export()))
                .collect(),
            accounts: self.accounts.clone(),
            ledger: self.ledger.clone(),
            open: self.open.iter().map(|(k, v)| (*k, v.clone())).collect(),
            next_order_id: self.next_order_id,
            positions: self.positions.clone(),
            insurance: self.insurance,
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &ExchangeSettings {
        &self.settings
    }

    /// Instruments, in id order.
    pub fn instruments(&self) -> impl Iterator<Item = &Instrument> {
        self.markets.values().map(|m| &m.instrument)
    }

    /// One instrument's book.
    pub fn book(&self, instrument: &InstrumentId) -> Option<&OrderBook> {
        self.markets.get(instrument).map(|m| &m.book)
    }

    /// Balances.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Perpetual positions of an account.
    pub fn positions(&self, account: &AccountId) -> Vec<(InstrumentId, Position)> {
        self.positions
            .iter()
            .filter(|((a, _), p)| a == account && p.qty != 0)
            .map(|((_, i), p)| (i.clone(), *p))
            .collect()
    }

    /// Every position, for checks.
    pub fn all_positions(&self) -> impl Iterator<Item = (&(AccountId, InstrumentId), &Position)> {
        self.positions.iter()
    }

    /// The insurance fund.
    pub fn insurance(&self) -> Amount {
        self.insurance
    }

    /// An account's settings.
    pub fn account(&self, id: &AccountId) -> Option<&AccountState> {
        self.accounts.get(id)
    }

    /// An open order.
    pub fn open_order(&self, id: OrderId) -> Option<&OpenOrder> {
        self.open.get(&id)
    }

    /// Open orders of an account (all instruments when `instrument` is none),
    /// oldest first.
    pub fn open_orders(
        &self,
        account: &AccountId,
        instrument: Option<&InstrumentId>,
    ) -> Vec<Order> {
        let mut v: Vec<Order> = self
            .open
            .values()
            .filter(|o| &o.order.account == account)
            .filter(|o| instrument.is_none_or(|i| &o.order.instrument == i))
            .map(|o| o.order.clone())
            .collect();
        v.sort_by_key(|o| o.id);
        v
    }

    /// Finds an open order of `account` by id or client id.
    pub fn find(&self, account: &AccountId, order: &OrderRef) -> Option<&OpenOrder> {
        let id = match order {
            OrderRef::Id(id) => *id,
            OrderRef::Client(c) => *self.client_ids.get(&(account.clone(), c.clone()))?,
        };
        self.open.get(&id).filter(|o| &o.order.account == account)
    }

    fn open_account(&mut self, id: &AccountId, tier: &str, stp: StpMode) -> Owner {
        if let Some(a) = self.accounts.get(id) {
            return a.owner;
        }
        let owner = Owner(self.owners.len() as u32);
        self.owners.push(id.clone());
        self.accounts.insert(
            id.clone(),
            AccountState {
                owner,
                tier: tier.to_string(),
                stp,
            },
        );
        owner
    }

    fn tier(&self, account: &AccountState) -> FeeTier {
        self.settings
            .fee_tiers
            .get(&account.tier)
            .or_else(|| self.settings.fee_tiers.get("default"))
            .copied()
            .unwrap_or(FeeTier {
                maker: Rate::ZERO,
                taker: Rate::ZERO,
            })
    }

    /// Applies one command at time `ts`, appending what happened to `out`.
    pub fn apply(
        &mut self,
        cmd: &Command,
        ts: UnixNanos,
        out: &mut Vec<ExchangeEvent>,
    ) -> Result<Reply, ExchangeError> {
        self.touched.clear();
        let reply = match cmd {
            Command::Place(p) => self.place(p, ts, out),
            Command::Cancel {
                account,
                instrument,
                order,
            } => self.cancel(account, instrument, order, ts, out),
            Command::CancelAll {
                account,
                instrument,
            } => self.cancel_all(account, instrument.as_ref(), ts, out),
            Command::Amend {
                account,
                instrument,
                order,
                price,
                quantity,
            } => self.amend(account, instrument, order, *price, *quantity, ts, out),
            Command::Deposit {
                account,
                asset,
                amount,
            } => {
                if *amount <= Amount::ZERO {
                    return Err(ExchangeError::NonPositiveAmount);
                }
                self.open_account(account, "default", StpMode::default());
                self.ledger.credit(account, asset, *amount);
                self.touch(account, asset);
                Ok(Reply::Balance(self.ledger.get(account, asset)))
            }
            Command::Withdraw {
                account,
                asset,
                amount,
            } => {
                if *amount <= Amount::ZERO {
                    return Err(ExchangeError::NonPositiveAmount);
                }
                if !self.accounts.contains_key(account) {
                    return Err(ExchangeError::UnknownAccount(account.clone()));
                }
                self.ledger.debit(account, asset, *amount)?;
                self.touch(account, asset);
                Ok(Reply::Balance(self.ledger.get(account, asset)))
            }
            Command::Funding { instrument, index } => self.funding(instrument, *index, out),
            Command::Mark { instrument, index } => self.mark(instrument, *index, ts, out),
            Command::SetFillCap { instrument, bps } => {
                if *bps == 0 || *bps > 10_000 {
                    return Err(ExchangeError::Rejected(RejectReason::OutOfRange));
                }
                for (id, m) in self.markets.iter_mut() {
                    if instrument.as_ref().is_none_or(|i| i == id) {
                        let mut c = m.book.config();
                        c.fill_cap_bps = *bps;
                        m.book.set_config(c);
                    }
                }
                Ok(Reply::Done)
            }
            Command::Expire => {
                let ids: Vec<InstrumentId> = self.markets.keys().cloned().collect();
                for id in ids {
                    self.scratch.clear();
                    if let Some(m) = self.markets.get_mut(&id) {
                        m.book.expire(ts, &mut self.scratch);
                    }
                    self.process(&id, ts, out, None);
                }
                Ok(Reply::Done)
            }
        };
        for (account, instrument, position) in std::mem::take(&mut self.position_events) {
            out.push(ExchangeEvent::Position {
                account,
                instrument,
                position,
            });
        }
        for (account, asset) in std::mem::take(&mut self.touched) {
            let balance = self.ledger.get(&account, &asset);
            out.push(ExchangeEvent::Balance {
                account,
                asset,
                balance,
            });
        }
        reply
    }

    fn touch(&mut self, account: &AccountId, asset: &AssetCode) {
        if !self.touched.iter().any(|(a, s)| a == account && s == asset) {
            self.touched.push((account.clone(), asset.clone()));
        }
    }

    fn place(
        &mut self,
        p: &PlaceOrder,
        ts: UnixNanos,
        out: &mut Vec<ExchangeEvent>,
    ) -> Result<Reply, ExchangeError> {
        let market = self
            .markets
            .get(&p.instrument)
            .ok_or_else(|| ExchangeError::UnknownInstrument(p.instrument.clone()))?;
        let account = self
            .accounts
            .get(&p.account)
            .ok_or_else(|| ExchangeError::UnknownAccount(p.account.clone()))?
            .clone();
        let id = OrderId(self.next_order_id);
        let client_order_id = p
            .client_order_id
            .clone()
            .unwrap_or_else(|| ClientOrderId::new(format!("ts-{}", id.0)));
        if self
            .client_ids
            .contains_key(&(p.account.clone(), client_order_id.clone()))
        {
            return Err(ExchangeError::DuplicateClientOrderId(client_order_id));
        }
        let tier = self.tier(&account);
        let ins = &market.instrument;
        // What the book sees. Buys that carry no price (market, stop) get the
        // protective band as a limit, so their reservation bounds their cost.
        let band = |reference: Price| {
            let bps = i128::from(self.settings.market_band_bps);
            let raw = i128::from(reference.raw()) * (10_000 + bps) / 10_000;
            Price::from_raw(raw as i64).round_down_to(ins.tick_size)
        };
        let (book_type, book_price, book_tif) = match (p.side, p.order_type) {
            (Side::Buy, OrderType::Market) => match market.book.best_ask() {
                Some((ask, _)) => (OrderType::Limit, Some(band(ask)), TimeInForce::Ioc),
                None => (OrderType::Market, None, p.time_in_force),
            },
            (Side::Buy, OrderType::Stop) => (
                OrderType::StopLimit,
                p.stop_price.map(band),
                TimeInForce::Ioc,
            ),
            _ => (p.order_type, p.price, p.time_in_force),
        };
        let fee_rate = tier.taker.max(tier.maker).max(Rate::ZERO);
        let (reserve_asset, reserve_price, reserved) = match (&market.perp, p.side) {
            (Some((contract_size, settle)), side) => {
                // Initial margin plus the highest fee, at the order's price
                // (a sell without one: the best bid it would meet).
                let price = match (side, book_price, p.stop_price) {
                    (_, Some(px), _) => px,
                    (Side::Sell, None, Some(stop)) => stop,
                    (Side::Sell, None, None) => market.book.best_bid().map_or(Price::ZERO, |b| b.0),
                    (Side::Buy, None, _) => Price::ZERO,
                };
                let rate = self.settings.margin.initial + fee_rate;
                let notional = crate::margin::notional(price, p.quantity.raw(), *contract_size);
                let reserve = ceil_div(
                    notional.raw() * i128::from(rate.raw()),
                    i128::from(tradestack_model::fixed::SCALE),
                );
                (settle.clone(), price, Amount::from_raw(reserve))
            }
            (None, Side::Buy) => {
                let price = book_price.unwrap_or(Price::ZERO);
                (
                    ins.quote.clone(),
                    price,
                    buy_reserve(price, p.quantity, fee_rate),
                )
            }
            (None, Side::Sell) => (
                ins.base.clone(),
                Price::ZERO,
                Amount::from_raw(i128::from(p.quantity.raw())),
            ),
        };
        let reserved = if self.liquidating {
            Amount::ZERO
        } else {
            reserved
        };
        let market_perp = market.perp.is_some();
        let new = NewOrder {
            id,
            owner: account.owner,
            side: p.side,
            order_type: book_type,
            time_in_force: book_tif,
            price: book_price,
            stop_price: p.stop_price,
            quantity: p.quantity,
            expire_at: p.expire_at,
            stp: p.stp.unwrap_or(account.stp),
            fees: tier.into(),
        };
        self.ledger.reserve(&p.account, &reserve_asset, reserved)?;
        let order = Order {
            id,
            client_order_id: client_order_id.clone(),
            account: p.account.clone(),
            strategy: None,
            instrument: p.instrument.clone(),
            side: p.side,
            order_type: p.order_type,
            time_in_force: p.time_in_force,
            price: p.price,
            stop_price: p.stop_price,
            expire_at: p.expire_at,
            quantity: p.quantity,
            filled: Quantity::ZERO,
            status: if p.stop_price.is_some() {
                OrderStatus::PendingTrigger
            } else {
                OrderStatus::New
            },
            created_at: ts,
            updated_at: ts,
        };
        self.scratch.clear();
        let market = self
            .markets
            .get_mut(&p.instrument)
            .expect("looked up above");
        market.book.submit(&new, ts, &mut self.scratch);
        if let Some(BookEvent::Rejected { reason, .. }) = self.scratch.first() {
            let reason = *reason;
            self.ledger.release(&p.account, &reserve_asset, reserved);
            return Err(ExchangeError::Rejected(reason));
        }
        self.next_order_id += 1;
        self.touch(&p.account, &reserve_asset);
        self.client_ids
            .insert((p.account.clone(), client_order_id), id);
        self.open.insert(
            id,
            OpenOrder {
                order,
                leaves: p.quantity,
                reserve_asset,
                reserved,
                reserve_price,
                fee_reserve_rate: if market_perp {
                    self.settings.margin.initial + fee_rate
                } else {
                    fee_rate
                },
                cum_quote: Amount::ZERO,
            },
        );
        let mut fills = Vec::new();
        let last = self.process(&p.instrument, ts, out, Some((id, &mut fills)));
        Ok(Reply::Order(last.expect("the order was accepted"), fills))
    }

    fn cancel(
        &mut self,
        account: &AccountId,
        instrument: &InstrumentId,
        which: &OrderRef,
        ts: UnixNanos,
        out: &mut Vec<ExchangeEvent>,
    ) -> Result<Reply, ExchangeError> {
        let owner = self.owner(account)?;
        let id = self
            .find(account, which)
            .filter(|o| &o.order.instrument == instrument)
            .map(|o| o.order.id)
            .ok_or(ExchangeError::UnknownOrder)?;
        self.scratch.clear();
        let market = self
            .markets
            .get_mut(instrument)
            .ok_or_else(|| ExchangeError::UnknownInstrument(instrument.clone()))?;
        market.book.cancel(id, Some(owner), &mut self.scratch);
        if let Some(BookEvent::Rejected { reason, .. }) = self.scratch.first() {
            return Err(ExchangeError::Rejected(*reason));
        }
        let last = self.process(instrument, ts, out, Some((id, &mut Vec::new())));
        Ok(Reply::Order(
            last.ok_or(ExchangeError::UnknownOrder)?,
            Vec::new(),
        ))
    }

    fn cancel_all(
        &mut self,
        account: &AccountId,
        instrument: Option<&InstrumentId>,
        ts: UnixNanos,
        out: &mut Vec<ExchangeEvent>,
    ) -> Result<Reply, ExchangeError> {
        let owner = self.owner(account)?;
        let ids: Vec<InstrumentId> = match instrument {
            Some(i) if !self.markets.contains_key(i) => {
                return Err(ExchangeError::UnknownInstrument(i.clone()));
            }
            Some(i) => vec![i.clone()],
            None => self.markets.keys().cloned().collect(),
        };
        let before = out.len();
        for id in ids {
            self.scratch.clear();
            if let Some(m) = self.markets.get_mut(&id) {
                m.book.cancel_all(Some(owner), &mut self.scratch);
            }
            self.process(&id, ts, out, None);
        }
        let cancelled = out[before..]
            .iter()
            .filter_map(|e| match e {
                ExchangeEvent::Order(o) if o.status == OrderStatus::Cancelled => Some(o.clone()),
                _ => None,
            })
            .collect();
        Ok(Reply::Cancelled(cancelled))
    }

    #[allow(clippy::too_many_arguments)]
    fn amend(
        &mut self,
        account: &AccountId,
        instrument: &InstrumentId,
        which: &OrderRef,
        price: Option<Price>,
        quantity: Option<Quantity>,
        ts: UnixNanos,
        out: &mut Vec<ExchangeEvent>,
    ) -> Result<Reply, ExchangeError> {
        let owner = self.owner(account)?;
        let open = self
            .find(account, which)
            .filter(|o| &o.order.instrument == instrument)
            .cloned()
            .ok_or(ExchangeError::UnknownOrder)?;
        let id = open.order.id;
        // Re-reserve for the new open quantity at the new price (buys).
        let new_price = price.or(open.order.price).unwrap_or(open.reserve_price);
        let new_leaves = quantity.unwrap_or(open.leaves);
        let perp = self.markets.get(instrument).and_then(|m| m.perp.clone());
        let new_reserved = match (perp, open.order.side) {
            (Some((contract_size, _)), _) => {
                let notional = crate::margin::notional(new_price, new_leaves.raw(), contract_size);
                Amount::from_raw(ceil_div(
                    notional.raw() * i128::from(open.fee_reserve_rate.raw()),
                    i128::from(tradestack_model::fixed::SCALE),
                ))
            }
            (None, Side::Buy) => buy_reserve(new_price, new_leaves, open.fee_reserve_rate),
            (None, Side::Sell) => Amount::from_raw(i128::from(new_leaves.raw())),
        };
        let extra = new_reserved - open.reserved;
        if extra > Amount::ZERO {
            self.ledger.reserve(account, &open.reserve_asset, extra)?;
        } else {
            self.ledger.release(account, &open.reserve_asset, -extra);
        }
        self.scratch.clear();
        let market = self
            .markets
            .get_mut(instrument)
            .ok_or_else(|| ExchangeError::UnknownInstrument(instrument.clone()))?;
        market
            .book
            .amend(id, Some(owner), price, quantity, &mut self.scratch);
        if let Some(BookEvent::Rejected { reason, .. }) = self.scratch.first() {
            // Undo the reservation change.
            if extra > Amount::ZERO {
                self.ledger.release(account, &open.reserve_asset, extra);
            } else {
                self.ledger
                    .reserve(account, &open.reserve_asset, -extra)
                    .expect("just released");
            }
            return Err(ExchangeError::Rejected(*reason));
        }
        if let Some(o) = self.open.get_mut(&id) {
            o.reserved = new_reserved;
            o.reserve_price = new_price;
        }
        self.touch(account, &open.reserve_asset);
        let mut fills = Vec::new();
        let last = self.process(instrument, ts, out, Some((id, &mut fills)));
        Ok(Reply::Order(
            last.ok_or(ExchangeError::UnknownOrder)?,
            fills,
        ))
    }

    fn owner(&self, account: &AccountId) -> Result<Owner, ExchangeError> {
        self.accounts
            .get(account)
            .map(|a| a.owner)
            .ok_or_else(|| ExchangeError::UnknownAccount(account.clone()))
    }

    /// Turns the book's events in `scratch` into exchange events, settling
    /// balances. With `watch`, returns that order's last state and collects
    /// its fills.
    fn process(
        &mut self,
        instrument: &InstrumentId,
        ts: UnixNanos,
        out: &mut Vec<ExchangeEvent>,
        watch: Option<(OrderId, &mut Vec<Fill>)>,
    ) -> Option<Order> {
        let (watch_id, mut fills) = match watch {
            Some((id, fills)) => (Some(id), Some(fills)),
            None => (None, None),
        };
        let events = std::mem::take(&mut self.scratch);
        let (base, quote) = {
            let ins = &self.markets[instrument].instrument;
            (ins.base.clone(), ins.quote.clone())
        };
        let mut last = None;
        let note = |o: &Order, last: &mut Option<Order>| {
            if watch_id == Some(o.id) {
                *last = Some(o.clone());
            }
        };
        for e in &events {
            match *e {
                BookEvent::Accepted { id, .. } => {
                    if let Some(o) = self.open.get(&id) {
                        out.push(ExchangeEvent::Order(o.order.clone()));
                        note(&o.order, &mut last);
                    }
                }
                BookEvent::Triggered { id, .. } => {
                    if let Some(o) = self.open.get_mut(&id) {
                        o.order.status = OrderStatus::New;
                        o.order.updated_at = ts;
                        out.push(ExchangeEvent::Order(o.order.clone()));
                        note(&o.order, &mut last);
                    }
                }
                BookEvent::Trade(t) => {
                    out.push(ExchangeEvent::Trade(Trade {
                        id: t.trade_id,
                        instrument: instrument.clone(),
                        price: t.price,
                        quantity: t.quantity,
                        aggressor: t.aggressor,
                        ts,
                    }));
                    for (order_id, liquidity, fee) in [
                        (t.maker, Liquidity::Maker, t.maker_fee),
                        (t.taker, Liquidity::Taker, t.taker_fee),
                    ] {
                        if let Some(fill) =
                            self.settle(&t, order_id, liquidity, fee, &base, &quote, ts)
                        {
                            if watch_id == Some(order_id)
                                && let Some(fills) = fills.as_mut()
                            {
                                fills.push(fill.clone());
                            }
                            out.push(ExchangeEvent::Fill(fill));
                            if let Some(o) = self.order_after_change(order_id, ts) {
                                note(&o, &mut last);
                                out.push(ExchangeEvent::Order(o));
                            }
                        }
                    }
                }
                BookEvent::Cancelled {
                    id,
                    quantity,
                    reason,
                    ..
                } => {
                    // As on Binance: what an IOC or market order could not
                    // fill expires; everything else is cancelled.
                    let status = match reason {
                        CancelReason::Unfilled | CancelReason::PriceBand => OrderStatus::Expired,
                        _ => OrderStatus::Cancelled,
                    };
                    if let Some(o) = self.remove_quantity(id, quantity, status, ts) {
                        note(&o, &mut last);
                        out.push(ExchangeEvent::Order(o));
                    }
                }
                BookEvent::Expired { id, quantity, .. } => {
                    if let Some(o) = self.remove_quantity(id, quantity, OrderStatus::Expired, ts) {
                        note(&o, &mut last);
                        out.push(ExchangeEvent::Order(o));
                    }
                }
                BookEvent::Amended {
                    id,
                    price,
                    quantity,
                    ..
                } => {
                    if let Some(o) = self.open.get_mut(&id) {
                        o.leaves = quantity;
                        o.order.quantity = o.order.filled + quantity;
                        if o.order.price.is_some() {
                            o.order.price = Some(price);
                        }
                        o.order.updated_at = ts;
                        out.push(ExchangeEvent::Order(o.order.clone()));
                        note(&o.order, &mut last);
                    }
                }
                BookEvent::Delta(delta) => out.push(ExchangeEvent::Book {
                    instrument: instrument.clone(),
                    delta,
                }),
                BookEvent::Rested { .. } | BookEvent::Rejected { .. } => {}
            }
        }
        self.scratch = events;
        self.scratch.clear();
        if last.is_none()
            && let Some(id) = watch_id
        {
            last = self.open.get(&id).map(|o| o.order.clone());
        }
        last
    }

    /// Books one side of a trade: balances, the order's fill. Returns the fill.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        t: &TradeEvent,
        order_id: OrderId,
        liquidity: Liquidity,
        fee: Amount,
        base: &AssetCode,
        quote: &AssetCode,
        ts: UnixNanos,
    ) -> Option<Fill> {
        let o = self.open.get_mut(&order_id)?;
        let q = t.quantity;
        let notional = t.price.notional(q);
        let share = share_of(o.reserved, q, o.leaves);
        o.reserved -= share;
        o.leaves -= q;
        o.order.filled += q;
        o.cum_quote += notional;
        o.order.updated_at = ts;
        let account = o.order.account.clone();
        let side = o.order.side;
        let fill = Fill {
            trade_id: t.trade_id,
            order_id,
            client_order_id: o.order.client_order_id.clone(),
            account: account.clone(),
            strategy: o.order.strategy.clone(),
            instrument: o.order.instrument.clone(),
            side,
            price: t.price,
            quantity: q,
            fee,
            fee_asset: quote.clone(),
            liquidity,
            ts,
        };
        let instrument = fill.instrument.clone();
        if let Some((contract_size, settle)) =
            self.markets.get(&instrument).and_then(|m| m.perp.clone())
        {
            let fill = Fill {
                fee_asset: settle.clone(),
                ..fill
            };
            self.settle_perp(
                &account,
                &instrument,
                side,
                t.price,
                q,
                share,
                fee,
                contract_size,
                &settle,
            );
            return Some(fill);
        }
        match side {
            Side::Buy => {
                // Spent: the notional plus the fee (a rebate lowers it).
                self.ledger.settle(&account, quote, share, notional + fee);
                self.ledger
                    .credit(&account, base, Amount::from_raw(i128::from(q.raw())));
            }
            Side::Sell => {
                self.ledger.settle(&account, base, share, share);
                let proceeds = notional - fee;
                if proceeds > Amount::ZERO {
                    self.ledger.credit(&account, quote, proceeds);
                }
            }
        }
        self.touch(&account, base);
        self.touch(&account, quote);
        Some(fill)
    }

    /// Books one side of a perpetual fill: the position, its margin and the
    /// realized P&L, in the settle asset.
    #[allow(clippy::too_many_arguments)]
    fn settle_perp(
        &mut self,
        account: &AccountId,
        instrument: &InstrumentId,
        side: Side,
        price: Price,
        q: Quantity,
        share: Amount,
        fee: Amount,
        contract_size: Quantity,
        settle: &AssetCode,
    ) {
        let key = (account.clone(), instrument.clone());
        let pos = self.positions.entry(key).or_default();
        let dq = if side == Side::Buy { q.raw() } else { -q.raw() };
        let closing = if pos.qty != 0 && (pos.qty > 0) != (dq > 0) {
            q.raw().min(pos.qty.abs())
        } else {
            0
        };
        // The reservation of the part that opens becomes its margin, up to
        // the initial margin at the fill price; the rest goes back.
        let opened = q.raw() - closing;
        let open_share =
            Amount::from_raw(share.raw() * i128::from(opened) / i128::from(q.raw().max(1)));
        let initial = crate::margin::notional(price, opened, contract_size)
            .mul_rate(self.settings.margin.initial);
        let margin = initial.min(open_share);
        let change = pos.apply(dq, price, contract_size, margin);
        let position = *pos;
        let delta = share - fee - margin + change.released + change.realized;
        let shortfall = self.ledger.settle_signed(account, settle, share, delta);
        self.insurance -= shortfall;
        self.touch(account, settle);
        self.position_events
            .push((account.clone(), instrument.clone(), position));
    }

    /// Pays funding on every position of a perpetual.
    fn funding(
        &mut self,
        instrument: &InstrumentId,
        index: Price,
        out: &mut Vec<ExchangeEvent>,
    ) -> Result<Reply, ExchangeError> {
        let (contract_size, settle, mark) = self.mark_of(instrument, index)?;
        let rate = crate::margin::funding_rate(mark, index, self.settings.margin.funding_cap);
        let holders: Vec<(AccountId, Position)> = self
            .positions
            .iter()
            .filter(|((_, i), p)| i == instrument && p.qty != 0)
            .map(|((a, _), p)| (a.clone(), *p))
            .collect();
        for (account, p) in holders {
            // Longs pay shorts when the rate is positive.
            let size = crate::margin::notional(mark, p.qty, contract_size).mul_rate(rate);
            let amount = if p.qty > 0 { -size } else { size };
            if amount >= Amount::ZERO {
                self.ledger.credit(&account, &settle, amount);
            } else {
                // From the free balance, then the position's margin, then
                // the insurance fund.
                let owed = -amount;
                let free = self.ledger.get(&account, &settle).free;
                let from_free = owed.min(free);
                if from_free > Amount::ZERO {
                    let _ = self.ledger.debit(&account, &settle, from_free);
                }
                let pos = self
                    .positions
                    .get_mut(&(account.clone(), instrument.clone()))
                    .expect("listed");
                let from_margin = (owed - from_free).min(pos.margin);
                pos.margin -= from_margin;
                self.insurance -= owed - from_free - from_margin;
            }
            let pos = self
                .positions
                .get_mut(&(account.clone(), instrument.clone()))
                .expect("listed");
            pos.funding += amount;
            let position = *pos;
            self.touch(&account, &settle);
            out.push(ExchangeEvent::Funding {
                account: account.clone(),
                instrument: instrument.clone(),
                rate,
                amount,
            });
            out.push(ExchangeEvent::Position {
                account,
                instrument: instrument.clone(),
                position,
            });
        }
        Ok(Reply::Done)
    }

    /// Liquidates every position of a perpetual under maintenance margin at
    /// the mark price: cancels the account's orders there and closes the
    /// position with a market order that reserves nothing.
    fn mark(
        &mut self,
        instrument: &InstrumentId,
        index: Price,
        ts: UnixNanos,
        out: &mut Vec<ExchangeEvent>,
    ) -> Result<Reply, ExchangeError> {
        let (contract_size, _, mark) = self.mark_of(instrument, index)?;
        let maintenance = self.settings.margin.maintenance;
        let under: Vec<(AccountId, Position)> = self
            .positions
            .iter()
            .filter(|((_, i), p)| i == instrument && p.underwater(mark, contract_size, maintenance))
            .map(|((a, _), p)| (a.clone(), *p))
            .collect();
        for (account, p) in under {
            out.push(ExchangeEvent::Liquidated {
                account: account.clone(),
                instrument: instrument.clone(),
                mark,
            });
            self.cancel_all(&account, Some(instrument), ts, out)?;
            self.liquidating = true;
            let close = PlaceOrder {
                account: account.clone(),
                instrument: instrument.clone(),
                client_order_id: None,
                side: if p.qty > 0 { Side::Sell } else { Side::Buy },
                order_type: OrderType::Market,
                time_in_force: TimeInForce::Ioc,
                price: None,
                stop_price: None,
                quantity: Quantity::from_raw(p.qty.abs()),
                expire_at: None,
                stp: Some(StpMode::None),
            };
            let result = self.place(&close, ts, out);
            self.liquidating = false;
            if let Err(e) = result {
                tracing::warn!(error = %e, account = %account, "liquidation order refused");
            }
        }
        Ok(Reply::Done)
    }

    /// Contract size, settle asset and mark price of a perpetual.
    fn mark_of(
        &self,
        instrument: &InstrumentId,
        index: Price,
    ) -> Result<(Quantity, AssetCode, Price), ExchangeError> {
        let m = self
            .markets
            .get(instrument)
            .ok_or_else(|| ExchangeError::UnknownInstrument(instrument.clone()))?;
        let (contract_size, settle) = m
            .perp
            .clone()
            .ok_or_else(|| ExchangeError::NotPerpetual(instrument.clone()))?;
        if index.raw() <= 0 {
            return Err(ExchangeError::Rejected(RejectReason::NonPositivePrice));
        }
        let mid = match (m.book.best_bid(), m.book.best_ask()) {
            (Some((b, _)), Some((a, _))) => Some(Price::from_raw((b.raw() + a.raw()) / 2)),
            _ => m.book.last_trade_price(),
        };
        Ok((
            contract_size,
            settle,
            crate::margin::mark_price(index, mid, self.settings.margin.mark_band),
        ))
    }

    /// The order's state after a fill; closes it when nothing is left open.
    fn order_after_change(&mut self, id: OrderId, ts: UnixNanos) -> Option<Order> {
        let o = self.open.get_mut(&id)?;
        o.order.updated_at = ts;
        if o.leaves.is_zero() {
            o.order.status = OrderStatus::Filled;
            return Some(self.close(id));
        }
        o.order.status = OrderStatus::PartiallyFilled;
        Some(o.order.clone())
    }

    /// Removes `quantity` of open quantity without a trade, releasing its
    /// reservation; closes the order with `status` when nothing is left.
    fn remove_quantity(
        &mut self,
        id: OrderId,
        quantity: Quantity,
        status: OrderStatus,
        ts: UnixNanos,
    ) -> Option<Order> {
        let o = self.open.get_mut(&id)?;
        let share = share_of(o.reserved, quantity, o.leaves);
        o.reserved -= share;
        o.leaves -= quantity.min(o.leaves);
        o.order.updated_at = ts;
        let (account, asset) = (o.order.account.clone(), o.reserve_asset.clone());
        self.ledger.release(&account, &asset, share);
        self.touch(&account, &asset);
        let o = self.open.get_mut(&id)?;
        if o.leaves.is_zero() {
            o.order.status = status;
            return Some(self.close(id));
        }
        // Self-trade decrement: the order stays open with less.
        o.order.quantity = o.order.filled + o.leaves;
        Some(o.order.clone())
    }

    /// Takes a finished order out of the open set, releasing any reservation
    /// left by rounding.
    fn close(&mut self, id: OrderId) -> Order {
        let o = self.open.remove(&id).expect("closing an open order");
        if o.reserved > Amount::ZERO {
            self.ledger
                .release(&o.order.account, &o.reserve_asset, o.reserved);
            self.touch(&o.order.account, &o.reserve_asset);
        }
        self.client_ids
            .remove(&(o.order.account.clone(), o.order.client_order_id.clone()));
        o.order
    }
}

/// Quote reserved by a buy: notional plus the highest fee it can pay,
/// rounded up so the reservation always covers the cost.
fn buy_reserve(price: Price, qty: Quantity, fee_rate: Rate) -> Amount {
    let scale = i128::from(tradestack_model::fixed::SCALE);
    let notional = ceil_div(i128::from(price.raw()) * i128::from(qty.raw()), scale);
    let fee = ceil_div(notional * i128::from(fee_rate.raw()), scale);
    Amount::from_raw(notional + fee)
}

/// The part of `reserved` that belongs to `q` out of `leaves`: all of it
/// for the last part, otherwise a rounded-up proportional share.
fn share_of(reserved: Amount, q: Quantity, leaves: Quantity) -> Amount {
    if q >= leaves || leaves.is_zero() {
        return reserved;
    }
    let raw = ceil_div(
        reserved.raw() * i128::from(q.raw()),
        i128::from(leaves.raw()),
    );
    Amount::from_raw(raw.min(reserved.raw()))
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let d = a / b;
    if a % b != 0 && (a > 0) == (b > 0) {
        d + 1
    } else {
        d
    }
}
