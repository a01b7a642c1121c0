//! The risk monitor: pre-trade checks in the order path, post-trade rules
//! on a fixed evaluation cadence, trading states and alerts.
//!
//! It keeps its own view, built only from what it is told (fills, quotes,
//! reference prices, venue results, settlement breaks), so as a service it
//! needs nothing but the bus. Rules escalate states automatically (ACTIVE →
//! REDUCING → HALTED) and never relax them: leaving a restricted state is a
//! manual, audited decision.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use tradestack_model::{
    AccountId, Amount, AssetCode, Fill, Instrument, InstrumentId, Nanos, Price, Quote, Severity,
    Side, StrategyId, TradeId, UnixNanos,
};
use tradestack_trading::strategies::fair_value;
use tradestack_trading::{Action, OrderGate, Outgoing, Portfolio, Refusal, StrategyEngine};

use crate::alerts::{AlertBook, AlertChange, Finding};
use crate::config::RiskConfig;
use crate::state::{ChangedBy, StateBook, Subject, TradingState, Transition};

/// A difference custody found between what should be and what is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SettlementBreak {
    /// Stable id, so the break can be cleared.
    pub id: String,
    /// Account.
    pub account: AccountId,
    /// Asset.
    pub asset: AssetCode,
    /// What the fills say to expect.
    pub expected: Amount,
    /// What is there.
    pub actual: Amount,
}

/// What one evaluation changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Alerts fired or resolved.
    pub alerts: Vec<AlertChange>,
    /// State changes, each already audited.
    pub transitions: Vec<Transition>,
}

const SECOND: i64 = 1_000_000_000;

/// The risk monitor.
pub struct RiskMonitor {
    config: RiskConfig,
    states: StateBook,
    alerts: AlertBook,
    portfolio: Portfolio,
    accounts: BTreeMap<StrategyId, AccountId>,
    last_quote: BTreeMap<InstrumentId, UnixNanos>,
    submissions: BTreeMap<StrategyId, VecDeque<UnixNanos>>,
    runaway_since: BTreeMap<StrategyId, UnixNanos>,
    health: VecDeque<(UnixNanos, bool, Nanos)>,
    breaks: BTreeMap<String, SettlementBreak>,
    peaks: BTreeMap<Subject, i128>,
    day_start: BTreeMap<Subject, (i64, i128)>,
    /// The first fill of each trade, waiting for its other side.
    halves: BTreeMap<(InstrumentId, TradeId), AccountId>,
    /// Self and wash trades: (rule, subject) → (last seen, count).
    crossed: BTreeMap<(&'static str, String), (UnixNanos, u64)>,
    next_eval: UnixNanos,
    fired: BTreeMap<(String, Severity), u64>,
}

impl RiskMonitor {
    /// A monitor with `config` over `instruments`, first evaluating at `start`.
    pub fn new<'a>(
        config: RiskConfig,
        instruments: impl IntoIterator<Item = &'a Instrument>,
        start: UnixNanos,
    ) -> Self {
        RiskMonitor {
            config,
            states: StateBook::default(),
            alerts: AlertBook::default(),
            portfolio: Portfolio::new(instruments),
            accounts: BTreeMap::new(),
            last_quote: BTreeMap::new(),
            submissions: BTreeMap::new(),
            runaway_since: BTreeMap::new(),
            health: VecDeque::new(),
            breaks: BTreeMap::new(),
            peaks: BTreeMap::new(),
            day_start: BTreeMap::new(),
            halves: BTreeMap::new(),
            crossed: BTreeMap::new(),
            next_eval: start,
            fired: BTreeMap::new(),
        }
    }

    /// The limits.
    pub fn config(&self) -> &RiskConfig {
        &self.config
    }

    /// Tells the monitor which account a strategy trades for.
    pub fn register(&mut self, strategy: StrategyId, account: AccountId) {
        self.accounts.insert(strategy, account);
    }

    /// Trading states and their audit trail.
    pub fn states(&self) -> &StateBook {
        &self.states
    }

    /// Alerts.
    pub fn alerts(&self) -> &AlertBook {
        &self.alerts
    }

    /// The monitor's own positions, from the fills it saw.
    pub fn portfolio(&self) -> &Portfolio {
        &self.portfolio
    }

    /// Alerts fired so far, by rule and severity.
    pub fn fired(&self) -> &BTreeMap<(String, Severity), u64> {
        &self.fired
    }

    /// A fill (of any account): the position of its strategy, if named,
    /// and self- and wash-trade detection.
    pub fn on_fill(&mut self, fill: &Fill, now: UnixNanos) {
        self.on_strategy_fill(fill);
        self.on_venue_fill(fill, now);
    }

    /// A strategy's fill, for positions and P&L only (the service gets
    /// these attributed from the strategy service, apart from the venue's).
    pub fn on_strategy_fill(&mut self, fill: &Fill) {
        if fill.strategy.is_some() {
            let _ = self.portfolio.apply(fill);
        }
    }

    /// A fill as the venue reports it, for self- and wash-trade detection only.
    pub fn on_venue_fill(&mut self, fill: &Fill, now: UnixNanos) {
        let key = (fill.instrument.clone(), fill.trade_id);
        match self.halves.remove(&key) {
            None => {
                self.halves.insert(key, fill.account.clone());
                // Keep the pairing table small: a trade's two fills arrive together.
                while self.halves.len() > 1_024 {
                    self.halves.pop_first();
                }
            }
            Some(other) => {
                if other == fill.account {
                    self.note_crossed("self_trade", fill.account.to_string(), now);
                } else if let Some(group) = self
                    .config
                    .rules
                    .owner_groups
                    .iter()
                    .find(|(_, g)| g.contains(&other) && g.contains(&fill.account))
                {
                    self.note_crossed("wash_trade", group.0.clone(), now);
                }
            }
        }
    }

    fn note_crossed(&mut self, rule: &'static str, subject: String, now: UnixNanos) {
        let e = self.crossed.entry((rule, subject)).or_insert((now, 0));
        e.0 = now;
        e.1 += 1;
    }

    /// Any market data for an instrument (a quote, a trade, a book change):
    /// what staleness is judged by.
    pub fn on_market_data(&mut self, instrument: &InstrumentId, ts: UnixNanos) {
        let last = self.last_quote.entry(instrument.clone()).or_insert(ts);
        *last = (*last).max(ts);
    }

    /// A new top of book.
    pub fn on_quote(&mut self, quote: &Quote) {
        self.on_market_data(&quote.instrument, quote.ts);
        let mid = (i128::from(quote.bid.raw()) + i128::from(quote.ask.raw())) / 2;
        if let Ok(mid) = i64::try_from(mid) {
            self.portfolio
                .mark_mid(&quote.instrument, Price::from_raw(mid));
        }
    }

    /// A reference price (`BTC-USD`, `USDT-USD`, ...).
    pub fn on_reference(&mut self, instrument: &InstrumentId, price: Price) {
        self.portfolio.mark_reference(instrument, price);
    }

    /// The outcome of one request to the venue: accepted or refused, and its round trip.
    pub fn on_venue_result(&mut self, now: UnixNanos, ok: bool, latency: Nanos) {
        self.health.push_back((now, ok, latency));
    }

    /// Custody reports a break.
    pub fn on_settlement_break(&mut self, b: SettlementBreak) {
        self.breaks.insert(b.id.clone(), b);
    }

    /// One whole reconciliation from custody: its breaks replace the
    /// open ones (a break not in it has cleared).
    pub fn on_reconciliation(&mut self, breaks: &[tradestack_custody::Break]) {
        self.breaks.clear();
        for b in breaks {
            let id = format!("{}/{}", b.account, b.asset);
            self.breaks.insert(
                id.clone(),
                SettlementBreak {
                    id,
                    account: b.account.clone(),
                    asset: b.asset.clone(),
                    expected: b.expected,
                    actual: Amount::from_raw(b.custody.raw() + b.in_flight.raw()),
                },
            );
        }
    }

    /// Custody reports a break resolved.
    pub fn on_settlement_cleared(&mut self, id: &str) {
        self.breaks.remove(id);
    }

    /// A strategy asked for an order at `now` (gated or not); returns how
    /// many it asked for in the last second.
    pub fn on_submission(
        &mut self,
        strategy: &StrategyId,
        account: &AccountId,
        now: UnixNanos,
    ) -> usize {
        self.accounts
            .entry(strategy.clone())
            .or_insert_with(|| account.clone());
        let q = self.submissions.entry(strategy.clone()).or_default();
        q.push_back(now);
        while q.front().is_some_and(|t| now.0 - t.0 >= SECOND) {
            q.pop_front();
        }
        q.len()
    }

    /// Applies a state change decided elsewhere (the risk service's, seen
    /// by a strategy service's gate), keeping who made it.
    pub fn mirror(&mut self, t: &Transition) -> Option<Transition> {
        self.states
            .set(t.subject.clone(), t.to, &t.reason, t.by.clone(), t.at)
    }

    /// A manual state change, audited with `user`.
    pub fn set_state(
        &mut self,
        subject: Subject,
        to: TradingState,
        user: &str,
        reason: &str,
        now: UnixNanos,
    ) -> Option<Transition> {
        self.states.set(
            subject,
            to,
            reason,
            ChangedBy::Manual {
                user: user.to_string(),
            },
            now,
        )
    }

    /// When the rules next run.
    pub fn next_evaluation(&self) -> UnixNanos {
        self.next_eval
    }

    /// Runs every post-trade rule at `now`: alerts and automatic state changes.
    pub fn evaluate(&mut self, now: UnixNanos) -> Evaluation {
        let every = Nanos::from_std(self.config.rules.evaluate_every.as_std())
            .0
            .max(1);
        while self.next_eval <= now {
            self.next_eval += Nanos(every);
        }
        let mut findings: Vec<(Finding, Option<(Subject, TradingState)>)> = Vec::new();
        self.position_rules(&mut findings);
        self.exposure_rules(&mut findings);
        self.pnl_rules(now, &mut findings);
        self.market_rules(now, &mut findings);
        self.runaway_rule(now, &mut findings);
        let mut transitions = Vec::new();
        for (f, action) in &findings {
            if let Some((subject, to)) = action
                && self.states.get(subject) < *to
                && let Some(t) = self.states.set(
                    subject.clone(),
                    *to,
                    &f.message,
                    ChangedBy::Rule {
                        rule: f.rule.to_string(),
                    },
                    now,
                )
            {
                transitions.push(t);
            }
        }
        let alerts = self
            .alerts
            .update(findings.into_iter().map(|(f, _)| f).collect(), now);
        for c in &alerts {
            if let AlertChange::Fired(a) = c {
                *self.fired.entry((a.rule.clone(), a.severity)).or_default() += 1;
            }
        }
        Evaluation {
            alerts,
            transitions,
        }
    }

    fn strategy_subject(&self, account: &AccountId, strategy: &StrategyId) -> Subject {
        Subject {
            account: account.clone(),
            strategy: Some(strategy.clone()),
        }
    }

    fn position_rules(&self, out: &mut Vec<(Finding, Option<(Subject, TradingState)>)>) {
        let limits = &self.config.rules.position_limit;
        for (k, p) in self.portfolio.positions() {
            let (Some(limit), Some(strategy)) = (limits.get(&k.instrument), &k.strategy) else {
                continue;
            };
            let size = i128::from(p.qty().unsigned_abs());
            if size > i128::from(limit.raw()) {
                let subject = self.strategy_subject(&k.account, strategy);
                out.push((
                    Finding {
                        rule: "position_limit",
                        severity: Severity::Critical,
                        subject: format!("{subject} {}", k.instrument),
                        message: format!(
                            "{subject} holds {} {}, limit {limit}",
                            Amount::from_raw(i128::from(p.qty())),
                            k.instrument
                        ),
                        value: Amount::from_raw(size),
                        threshold: Amount::from_raw(i128::from(limit.raw())),
                    },
                    Some((subject, TradingState::Reducing)),
                ));
            }
        }
    }

    /// Accounts and strategies the monitor has seen fills for.
    fn owners(&self) -> BTreeSet<(AccountId, Option<StrategyId>)> {
        self.portfolio
            .positions()
            .map(|(k, _)| (k.account.clone(), k.strategy.clone()))
            .collect()
    }

    fn exposure_rules(&self, out: &mut Vec<(Finding, Option<(Subject, TradingState)>)>) {
        let r = &self.config.rules;
        let owners = self.owners();
        let accounts: BTreeSet<AccountId> = owners.iter().map(|(a, _)| a.clone()).collect();
        for account in accounts {
            let whole = Subject {
                account: account.clone(),
                strategy: None,
            };
            // Gross per asset: Σ over the account's strategies of |USD value|.
            let mut gross: BTreeMap<AssetCode, i128> = BTreeMap::new();
            for (_, s) in owners.iter().filter(|(a, _)| *a == account) {
                for e in self.portfolio.exposures(&account, s.as_ref()) {
                    if let Some(usd) = e.usd {
                        *gross.entry(e.asset.clone()).or_default() += usd.raw().abs();
                    }
                }
            }
            if let Some(limit) = r.gross_exposure_usd {
                for (asset, g) in &gross {
                    if *g > limit.raw() {
                        out.push((
                            finding(
                                "gross_exposure",
                                Severity::Critical,
                                format!("{account} {asset}"),
                                format!(
                                    "{account} gross {asset} exposure {} USD over {limit}",
                                    Amount::from_raw(*g)
                                ),
                                Amount::from_raw(*g),
                                limit,
                            ),
                            Some((whole.clone(), TradingState::Reducing)),
                        ));
                    }
                }
            }
            let net = self.portfolio.exposures(&account, None);
            for e in &net {
                let Some(usd) = e.usd else { continue };
                if let Some(limit) = r.net_exposure_usd
                    && usd.raw().abs() > limit.raw()
                {
                    out.push((
                        finding(
                            "net_exposure",
                            Severity::Critical,
                            format!("{account} {}", e.asset),
                            format!("{account} net {} exposure {usd} USD over {limit}", e.asset),
                            Amount::from_raw(usd.raw().abs()),
                            limit,
                        ),
                        Some((whole.clone(), TradingState::Reducing)),
                    ));
                }
                // A depegging stablecoin the account is exposed to.
                if r.stablecoins.contains(&e.asset)
                    && let (Some(limit), Some(peg)) =
                        (r.depeg_exposure_usd, self.portfolio.usd_price(&e.asset))
                {
                    let off_bps =
                        (i128::from(peg.raw()) - 100_000_000).abs() * 10_000 / 100_000_000;
                    if off_bps > i128::from(r.depeg_bps) && usd.raw().abs() > limit.raw() {
                        out.push((
                            finding("depeg_exposure", Severity::Critical, format!("{account} {}", e.asset),
                                format!("{} is {off_bps} bps off its peg; {account} holds {usd} USD of it", e.asset),
                                Amount::from_raw(usd.raw().abs()), limit),
                            Some((whole.clone(), TradingState::Reducing)),
                        ));
                    }
                }
            }
            if let Some(limit_bps) = r.concentration_bps {
                let total: i128 = gross.values().sum();
                if total > 0
                    && let Some((asset, top)) = gross.iter().max_by_key(|(_, v)| **v)
                {
                    let share = top * 10_000 / total;
                    if share > i128::from(limit_bps) && gross.len() > 1 {
                        out.push((
                            finding(
                                "concentration",
                                Severity::Warning,
                                format!("{account} {asset}"),
                                format!("{asset} is {share} bps of {account}'s gross exposure"),
                                Amount::from_units(share),
                                Amount::from_units(i128::from(limit_bps)),
                            ),
                            None,
                        ));
                    }
                }
            }
        }
    }

    /// A strategy's P&L in USD: realized + unrealized (reference, else mid) − fees.
    fn pnl_usd(&self, account: &AccountId, strategy: &StrategyId) -> i128 {
        let mut total = 0i128;
        for v in self.portfolio.views(Some(account)) {
            if v.strategy.as_ref() != Some(strategy) {
                continue;
            }
            let usd = |asset: &AssetCode, a: Amount| -> i128 {
                self.portfolio
                    .usd_price(asset)
                    .map_or(0, |p| a.raw() * i128::from(p.raw()) / 100_000_000)
            };
            let unrealized = v
                .unrealized_reference
                .or(v.unrealized_mid)
                .unwrap_or_default();
            total += usd(&v.pnl_asset, v.realized_pnl + unrealized);
            for (asset, fee) in &v.fees {
                total -= usd(asset, *fee);
            }
        }
        total
    }

    fn pnl_rules(
        &mut self,
        now: UnixNanos,
        out: &mut Vec<(Finding, Option<(Subject, TradingState)>)>,
    ) {
        let day = now.0.div_euclid(86_400 * SECOND);
        let owners: Vec<(AccountId, StrategyId)> = self
            .owners()
            .into_iter()
            .filter_map(|(a, s)| s.map(|s| (a, s)))
            .collect();
        for (account, strategy) in owners {
            let pnl = self.pnl_usd(&account, &strategy);
            let subject = self.strategy_subject(&account, &strategy);
            let peak = self.peaks.entry(subject.clone()).or_insert(pnl);
            *peak = (*peak).max(pnl);
            let drawdown = *peak - pnl;
            let start = self.day_start.entry(subject.clone()).or_insert((day, pnl));
            if start.0 != day {
                *start = (day, pnl);
            }
            let loss = start.1 - pnl;
            if let Some(limit) = self.config.rules.max_drawdown_usd
                && drawdown > limit.raw()
            {
                out.push((
                    finding(
                        "drawdown",
                        Severity::Critical,
                        subject.to_string(),
                        format!(
                            "{subject} is {} USD below its peak, limit {limit}",
                            Amount::from_raw(drawdown)
                        ),
                        Amount::from_raw(drawdown),
                        limit,
                    ),
                    Some((subject.clone(), TradingState::Halted)),
                ));
            }
            if let Some(limit) = self.config.rules.daily_loss_usd
                && loss > limit.raw()
            {
                out.push((
                    finding(
                        "daily_loss",
                        Severity::Critical,
                        subject.to_string(),
                        format!(
                            "{subject} lost {} USD today, limit {limit}",
                            Amount::from_raw(loss)
                        ),
                        Amount::from_raw(loss),
                        limit,
                    ),
                    Some((subject, TradingState::Halted)),
                ));
            }
        }
    }

    fn market_rules(
        &mut self,
        now: UnixNanos,
        out: &mut Vec<(Finding, Option<(Subject, TradingState)>)>,
    ) {
        let r = &self.config.rules;
        if let Some(stale) = r.stale_after {
            let limit = Nanos::from_std(stale.as_std());
            for (instrument, at) in &self.last_quote {
                let age = now.saturating_since(*at);
                if age > limit {
                    out.push((
                        finding(
                            "stale_market_data",
                            Severity::Warning,
                            instrument.to_string(),
                            format!("no market data for {instrument} in {} s", age.0 / SECOND),
                            seconds(age),
                            seconds(limit),
                        ),
                        None,
                    ));
                }
            }
        }
        if let Some(limit) = r.feed_deviation_bps {
            for instrument in self.last_quote.keys() {
                let marks = self.portfolio.marks(instrument);
                let (Some(mid), Some(reference)) = (marks.mid, marks.reference) else {
                    continue;
                };
                let off = (i128::from(mid.raw()) - i128::from(reference.raw())).abs() * 10_000
                    / i128::from(reference.raw().max(1));
                if off > i128::from(limit) {
                    out.push((
                        finding(
                            "market_data_deviation",
                            Severity::Warning,
                            instrument.to_string(),
                            format!("{instrument} quotes {mid} mid, {off} bps from the reference {reference}"),
                            Amount::from_units(off),
                            Amount::from_units(i128::from(limit)),
                        ),
                        None,
                    ));
                }
            }
        }
        let window = Nanos::from_std(r.health_window.as_std());
        while self
            .health
            .front()
            .is_some_and(|h| now.saturating_since(h.0) > window)
        {
            self.health.pop_front();
        }
        if !self.health.is_empty() {
            let n = self.health.len() as i128;
            let errors = self.health.iter().filter(|h| !h.1).count() as i128;
            let bps = errors * 10_000 / n;
            if let Some(limit) = r.exchange_error_bps
                && bps > i128::from(limit)
            {
                out.push((
                    finding(
                        "exchange_errors",
                        Severity::Critical,
                        "exchange".into(),
                        format!("{errors} of {n} exchange requests failed in the window"),
                        Amount::from_units(bps),
                        Amount::from_units(i128::from(limit)),
                    ),
                    None,
                ));
            }
            if let Some(p99_limit) = r.exchange_p99 {
                let mut lat: Vec<i64> = self.health.iter().map(|h| h.2.0).collect();
                lat.sort_unstable();
                let p99 = Nanos(lat[(lat.len() * 99).div_ceil(100).saturating_sub(1)]);
                let limit = Nanos::from_std(p99_limit.as_std());
                if p99 > limit {
                    out.push((
                        finding(
                            "exchange_latency",
                            Severity::Warning,
                            "exchange".into(),
                            format!("exchange p99 round trip {} ms", p99.0 / 1_000_000),
                            seconds(p99),
                            seconds(limit),
                        ),
                        None,
                    ));
                }
            }
        }
        for b in self.breaks.values() {
            out.push((
                finding(
                    "settlement_break",
                    Severity::Critical,
                    format!("{} {}", b.account, b.asset),
                    format!(
                        "{} {}: custody has {}, the fills say {}",
                        b.account, b.asset, b.actual, b.expected
                    ),
                    Amount::from_raw((b.actual.raw() - b.expected.raw()).abs()),
                    Amount::ZERO,
                ),
                None,
            ));
        }
        // Self and wash trades stay alerted for a health window after the last one.
        self.crossed
            .retain(|_, (last, _)| now.saturating_since(*last) <= window);
        for ((rule, subject), (_, count)) in &self.crossed {
            out.push((
                finding(
                    rule,
                    Severity::Critical,
                    subject.clone(),
                    format!("{count} {} by {subject}", rule.replace('_', " ")),
                    Amount::from_units(i128::from(*count)),
                    Amount::ZERO,
                ),
                None,
            ));
        }
    }

    fn runaway_rule(
        &mut self,
        now: UnixNanos,
        out: &mut Vec<(Finding, Option<(Subject, TradingState)>)>,
    ) {
        let Some(limit) = self.config.rules.runaway_orders_per_second else {
            return;
        };
        let hold = Nanos::from_std(self.config.rules.runaway_for.as_std());
        let rates: Vec<(StrategyId, usize)> = self
            .submissions
            .iter_mut()
            .map(|(s, q)| {
                while q.front().is_some_and(|t| now.0 - t.0 >= SECOND) {
                    q.pop_front();
                }
                (s.clone(), q.len())
            })
            .collect();
        for (strategy, rate) in rates {
            if rate as u64 <= u64::from(limit) {
                self.runaway_since.remove(&strategy);
                continue;
            }
            let since = *self.runaway_since.entry(strategy.clone()).or_insert(now);
            let Some(account) = self.accounts.get(&strategy).cloned() else {
                continue;
            };
            let subject = self.strategy_subject(&account, &strategy);
            let held = now.saturating_since(since);
            out.push((
                finding(
                    "order_rate",
                    Severity::Critical,
                    subject.to_string(),
                    format!(
                        "{subject} sends {rate} orders/s (limit {limit}) for {} ms",
                        held.0 / 1_000_000
                    ),
                    Amount::from_units(rate as i128),
                    Amount::from_units(i128::from(limit)),
                ),
                (held >= hold).then_some((subject, TradingState::Halted)),
            ));
        }
    }

    /// Limit utilisation per rule and subject, in basis points of the limit.
    pub fn utilisation(&self) -> Vec<(String, String, i64)> {
        self.alerts
            .active()
            .filter(|a| a.threshold.raw() > 0)
            .map(|a| {
                (
                    a.rule.clone(),
                    a.subject.clone(),
                    i64::try_from(a.value.raw() * 10_000 / a.threshold.raw()).unwrap_or(i64::MAX),
                )
            })
            .collect()
    }
}

fn finding(
    rule: &'static str,
    severity: Severity,
    subject: String,
    message: String,
    value: Amount,
    threshold: Amount,
) -> Finding {
    Finding {
        rule,
        severity,
        subject,
        message,
        value,
        threshold,
    }
}

fn seconds(n: Nanos) -> Amount {
    Amount::from_raw(i128::from(n.0) / 10)
}

fn refuse(rule: &str, message: String) -> Result<(), Refusal> {
    Err(Refusal {
        rule: rule.to_string(),
        message,
    })
}

impl OrderGate for RiskMonitor {
    fn check(
        &mut self,
        o: &Outgoing,
        now: UnixNanos,
        engine: &StrategyEngine,
    ) -> Result<(), Refusal> {
        let Action::Submit(req) = &o.action else {
            return Ok(());
        };
        // Every attempt counts toward the rate, refused or not.
        let recent = self.on_submission(&o.strategy, &o.account, now);
        let limits = &self.config.pretrade;
        let position: i64 = engine
            .portfolio()
            .positions()
            .filter(|(k, _)| {
                k.strategy.as_ref() == Some(&o.strategy) && k.instrument == req.instrument
            })
            .map(|(_, p)| p.qty())
            .sum();
        let signed = match req.side {
            Side::Buy => req.quantity.raw(),
            Side::Sell => -req.quantity.raw(),
        };
        let reduces = position != 0
            && signed.signum() != position.signum()
            && signed.unsigned_abs() <= position.unsigned_abs();
        match self.states.effective(&o.account, Some(&o.strategy)) {
            TradingState::Halted => {
                return refuse("halted", format!("{} is HALTED", o.strategy));
            }
            TradingState::Reducing if !reduces => {
                return refuse(
                    "reducing",
                    format!(
                        "{} is REDUCING: only orders that reduce its position",
                        o.strategy
                    ),
                );
            }
            _ => {}
        }
        let max_qty = limits
            .max_order_qty_per
            .get(&req.instrument)
            .copied()
            .or(limits.max_order_qty);
        if let Some(max) = max_qty
            && req.quantity > max
        {
            return refuse(
                "max_order_qty",
                format!("quantity {} over the limit {max}", req.quantity),
            );
        }
        let market = engine.market();
        let reference = fair_value(market, &req.instrument);
        let price = req.price.or(reference);
        if let (Some(max), Some(p)) = (limits.max_order_notional, price) {
            let notional = p.notional(req.quantity);
            if notional > max {
                return refuse(
                    "max_order_notional",
                    format!("value {notional} over the limit {max}"),
                );
            }
        }
        if let (Some(band), Some(p), Some(r)) = (limits.price_band_bps, req.price, reference) {
            let off = (i128::from(p.raw()) - i128::from(r.raw())).abs() * 10_000
                / i128::from(r.raw().max(1));
            if off > i128::from(band) {
                return refuse(
                    "price_band",
                    format!("price {p} is {off} bps from {r}, band {band} bps"),
                );
            }
        }
        if let Some(max) = limits.max_open_orders
            && engine.open_orders(&o.strategy).len() >= max as usize
        {
            return refuse(
                "max_open_orders",
                format!(
                    "{} open orders already, limit {max}",
                    engine.open_orders(&o.strategy).len()
                ),
            );
        }
        if let Some(max) = limits.max_orders_per_second
            && recent > max as usize
        {
            return refuse(
                "order_rate",
                format!("{recent} orders in the last second, limit {max}"),
            );
        }
        Ok(())
    }
}
