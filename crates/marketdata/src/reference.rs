//! A deterministic multi-asset reference-price process, stepped by the caller in simulated time.
//!
//! # Models
//!
//! Time is measured in years of [`YEAR_NANOS`] (365 days: crypto trades every day). For a
//! step of `dt` years each asset receives one correlated standard normal `z_i = (L ε)_i`, where
//! `ε` are independent standard normals (Box–Muller on [`DetRng::next_f64`]) and `L` is the
//! Cholesky factor of the configured correlation matrix (identity when none is given).
//!
//! - **Floating assets** ([`AssetModel::Gbm`]): geometric Brownian motion with Merton jumps,
//!   simulated exactly in log space:
//!   `ln S(t+dt) = ln S(t) + (μ − σ²/2 − λk) dt + σ √dt z + Σ_{j=1..N} Y_j`, with
//!   `N ~ Poisson(λ dt)`, `Y_j ~ Normal(m, s²)` and `k = exp(m + s²/2) − 1`. The `−λk`
//!   compensator makes `μ` the expected total return: `E[S(t)] = S(0) e^{μt}`.
//! - **Pegged assets** ([`AssetModel::Pegged`], stablecoins): Ornstein–Uhlenbeck around the
//!   peg `p`, with the exact transition
//!   `X(t+dt) = p + (X(t) − p) e^{−θ dt} + σ p √((1 − e^{−2θ dt}) / (2θ)) z`,
//!   so the stationary standard deviation is `σ p / √(2θ)` (`σ` is relative to the peg).
//!
//! Jumps draw from one forked stream per asset and the diffusion from another, so changing one
//! asset's jump intensity does not shift any other random number.
//!
//! # Overlays (scenario hooks)
//!
//! [`Overlay`]s act on top of the process, as functions of simulated time only:
//!
//! - [`Overlay::Shock`]: moves the listed assets (none listed = every floating asset) by
//!   `change` (−0.15 = −15 %), linearly in log space from `start` over `duration`. Once complete
//!   it becomes part of the process state: the market carries on from the shocked level.
//! - [`Overlay::Depeg`]: multiplies a pegged asset's price by a factor that falls linearly from
//!   1 to `target / peg` over `decline`, holds for `hold` (or until cleared), then returns
//!   linearly to 1 over `recovery`, after which the overlay ends.
//! - [`Overlay::VolRegime`]: from `start` until cleared, multiplies volatility by `vol_factor`
//!   and jump intensity by `jump_factor`. Regime starts that fall inside a `step` split it, so
//!   the switch happens at the exact nanosecond.
//!
//! [`ReferenceProcess::clear_overlay`] acts at the current simulated time: a shock stops where
//! it is (the move made so far is kept), a depeg begins its recovery from its current level
//! (one not yet started is removed), a volatility regime ends. Nothing ever jumps on clear.
//!
//! # Output
//!
//! The state is `f64` inside the model (through `libm`, so identical on every platform);
//! what leaves it is a [`Price`] rounded to the nearest 10^-8 or to a caller-given tick
//! (halves away from zero), never below one unit of the last place.

use crate::util::{f64_to_price, to_tick};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use tradestack_kernel::DetRng;
use tradestack_model::{InstrumentId, Nanos, Price, UnixNanos};

/// Nanoseconds in one model year (365 days), the unit of drift, volatility and intensities.
pub const YEAR_NANOS: i64 = 365 * 86_400 * 1_000_000_000;

/// Tolerance for the symmetry and unit-diagonal checks of the correlation matrix.
const CORRELATION_EPS: f64 = 1e-9;

/// Above this Poisson mean the jump count uses a normal approximation instead of Knuth's loop.
const POISSON_KNUTH_MAX: f64 = 30.0;

/// Why a configuration or an overlay was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReferenceError {
    /// The configuration lists no assets.
    #[error("no assets configured")]
    NoAssets,
    /// Two assets share a symbol.
    #[error("asset {0} is configured twice")]
    DuplicateAsset(InstrumentId),
    /// A per-asset parameter is out of its domain.
    #[error("asset {symbol}: `{field}` {reason}")]
    InvalidParameter {
        /// The asset.
        symbol: InstrumentId,
        /// The configuration field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The correlation matrix does not have one row and one column per asset.
    #[error(
        "correlation matrix must be {expected}x{expected} (one row and column per asset): {detail}"
    )]
    CorrelationShape {
        /// The number of assets.
        expected: usize,
        /// What was found instead.
        detail: String,
    },
    /// An entry is not finite or outside [-1, 1].
    #[error("correlation[{i}][{j}] = {value} is not a number in [-1, 1]")]
    CorrelationOutOfRange {
        /// Row.
        i: usize,
        /// Column.
        j: usize,
        /// The entry.
        value: f64,
    },
    /// `c[i][j] != c[j][i]`.
    #[error("correlation matrix is not symmetric: [{i}][{j}] = {a} but [{j}][{i}] = {b}")]
    NotSymmetric {
        /// Row.
        i: usize,
        /// Column.
        j: usize,
        /// `c[i][j]`.
        a: f64,
        /// `c[j][i]`.
        b: f64,
    },
    /// A diagonal entry is not 1.
    #[error("correlation[{i}][{i}] = {value}: the diagonal must be 1")]
    DiagonalNotOne {
        /// Row and column.
        i: usize,
        /// The entry.
        value: f64,
    },
    /// The Cholesky factorisation met a non-positive pivot.
    #[error(
        "correlation matrix is not positive definite: Cholesky pivot of row {row} is {pivot} (assets {symbol} and earlier are too dependent)"
    )]
    NotPositiveDefinite {
        /// The row where the factorisation failed.
        row: usize,
        /// The asset of that row.
        symbol: InstrumentId,
        /// The pivot value (<= 0).
        pivot: f64,
    },
    /// An overlay names an asset the process does not have.
    #[error("overlay refers to unknown asset {0}")]
    UnknownAsset(InstrumentId),
    /// An overlay parameter is out of its domain.
    #[error("overlay `{field}` {reason}")]
    InvalidOverlay {
        /// The overlay field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Which stochastic model drives an asset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetModel {
    /// Geometric Brownian motion with Merton jumps (`kind = "gbm"`, the default).
    #[default]
    Gbm,
    /// Ornstein–Uhlenbeck mean reversion around a peg (`kind = "pegged"`).
    Pegged,
}

/// One asset of the reference process (a `[[marketdata.assets]]` table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetConfig {
    /// The instrument the price is for, e.g. `BTC-USD`.
    pub symbol: InstrumentId,
    /// The model: `gbm` (default) or `pegged`.
    #[serde(default)]
    pub kind: AssetModel,
    /// Initial price, a decimal string.
    pub price: Price,
    /// Annualised volatility (GBM: of log returns; pegged: relative to the peg).
    #[serde(default)]
    pub volatility: f64,
    /// Annual expected total return (GBM only).
    #[serde(default)]
    pub drift: f64,
    /// Expected jumps per year (GBM only).
    #[serde(default)]
    pub jump_intensity: f64,
    /// Mean of the log jump size (GBM only).
    #[serde(default)]
    pub jump_mean: f64,
    /// Standard deviation of the log jump size (GBM only).
    #[serde(default)]
    pub jump_std: f64,
    /// The peg (pegged only; defaults to `price`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peg: Option<Price>,
    /// Mean-reversion speed θ per year (pegged only); half-life is `ln 2 / θ` years.
    #[serde(default)]
    pub reversion: f64,
}

impl AssetConfig {
    /// A floating asset without jumps.
    pub fn gbm(symbol: &str, price: Price, volatility: f64, drift: f64) -> Self {
        AssetConfig {
            symbol: InstrumentId::new(symbol),
            kind: AssetModel::Gbm,
            price,
            volatility,
            drift,
            jump_intensity: 0.0,
            jump_mean: 0.0,
            jump_std: 0.0,
            peg: None,
            reversion: 0.0,
        }
    }

    /// Adds Merton jumps: `intensity` per year, log sizes `Normal(mean, std²)`.
    pub fn with_jumps(mut self, intensity: f64, mean: f64, std: f64) -> Self {
        self.jump_intensity = intensity;
        self.jump_mean = mean;
        self.jump_std = std;
        self
    }

    /// A pegged asset starting at its peg.
    pub fn pegged(symbol: &str, peg: Price, reversion: f64, volatility: f64) -> Self {
        AssetConfig {
            symbol: InstrumentId::new(symbol),
            kind: AssetModel::Pegged,
            price: peg,
            volatility,
            drift: 0.0,
            jump_intensity: 0.0,
            jump_mean: 0.0,
            jump_std: 0.0,
            peg: Some(peg),
            reversion,
        }
    }

    fn validate(&self) -> Result<(), ReferenceError> {
        let bad = |field: &'static str, reason: &str| ReferenceError::InvalidParameter {
            symbol: self.symbol.clone(),
            field,
            reason: reason.to_string(),
        };
        if self.price.raw() <= 0 {
            return Err(bad("price", "must be positive"));
        }
        let non_negative = |field: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(bad(field, "must be a finite number >= 0"))
            }
        };
        non_negative("volatility", self.volatility)?;
        non_negative("jump_intensity", self.jump_intensity)?;
        non_negative("jump_std", self.jump_std)?;
        non_negative("reversion", self.reversion)?;
        if !self.drift.is_finite() {
            return Err(bad("drift", "must be finite"));
        }
        if !self.jump_mean.is_finite() {
            return Err(bad("jump_mean", "must be finite"));
        }
        if self.peg.is_some_and(|p| p.raw() <= 0) {
            return Err(bad("peg", "must be positive"));
        }
        if self.kind == AssetModel::Gbm && self.peg.is_some() {
            return Err(bad("peg", "only applies to kind = \"pegged\""));
        }
        Ok(())
    }
}

/// The reference process configuration (the `[marketdata]` table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// The assets, in the order of the correlation matrix rows.
    pub assets: Vec<AssetConfig>,
    /// Correlation of the assets' normal shocks; identity when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Vec<Vec<f64>>>,
}

impl Default for ReferenceConfig {
    /// BTC, ETH and SOL (correlated, with downward-skewed jumps) and two stablecoins.
    fn default() -> Self {
        let p = |s: &str| s.parse::<Price>().expect("literal price");
        ReferenceConfig {
            assets: vec![
                AssetConfig::gbm("BTC-USD", p("42000"), 0.6, 0.0).with_jumps(4.0, -0.01, 0.03),
                AssetConfig::gbm("ETH-USD", p("2500"), 0.75, 0.0).with_jumps(5.0, -0.015, 0.04),
                AssetConfig::gbm("SOL-USD", p("100"), 1.0, 0.0).with_jumps(6.0, -0.02, 0.06),
                AssetConfig::pegged("USDT-USD", p("1"), 50.0, 0.01),
                AssetConfig::pegged("USDC-USD", p("1"), 80.0, 0.005),
            ],
            correlation: Some(vec![
                vec![1.0, 0.8, 0.7, 0.0, 0.0],
                vec![0.8, 1.0, 0.75, 0.0, 0.0],
                vec![0.7, 0.75, 1.0, 0.0, 0.0],
                vec![0.0, 0.0, 0.0, 1.0, 0.3],
                vec![0.0, 0.0, 0.0, 0.3, 1.0],
            ]),
        }
    }
}

impl ReferenceConfig {
    /// Checks every parameter and factorises the correlation matrix; returns the factor `L`.
    pub fn validate(&self) -> Result<Vec<Vec<f64>>, ReferenceError> {
        if self.assets.is_empty() {
            return Err(ReferenceError::NoAssets);
        }
        let mut seen = BTreeSet::new();
        for a in &self.assets {
            a.validate()?;
            if !seen.insert(a.symbol.clone()) {
                return Err(ReferenceError::DuplicateAsset(a.symbol.clone()));
            }
        }
        let n = self.assets.len();
        match &self.correlation {
            None => Ok((0..n)
                .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
                .collect()),
            Some(c) => {
                check_correlation(c, n)?;
                cholesky(c).map_err(|row| ReferenceError::NotPositiveDefinite {
                    row: row.0,
                    symbol: self.assets[row.0].symbol.clone(),
                    pivot: row.1,
                })
            }
        }
    }
}

/// Shape, range, symmetry and unit-diagonal checks.
fn check_correlation(c: &[Vec<f64>], n: usize) -> Result<(), ReferenceError> {
    if c.len() != n {
        return Err(ReferenceError::CorrelationShape {
            expected: n,
            detail: format!("found {} rows", c.len()),
        });
    }
    for (i, row) in c.iter().enumerate() {
        if row.len() != n {
            return Err(ReferenceError::CorrelationShape {
                expected: n,
                detail: format!("row {i} has {} entries", row.len()),
            });
        }
    }
    for (i, row) in c.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            if !v.is_finite() || !(-1.0..=1.0).contains(&v) {
                return Err(ReferenceError::CorrelationOutOfRange { i, j, value: v });
            }
            if j > i && (v - c[j][i]).abs() > CORRELATION_EPS {
                return Err(ReferenceError::NotSymmetric {
                    i,
                    j,
                    a: v,
                    b: c[j][i],
                });
            }
        }
        if (row[i] - 1.0).abs() > CORRELATION_EPS {
            return Err(ReferenceError::DiagonalNotOne { i, value: row[i] });
        }
    }
    Ok(())
}

/// Cholesky–Banachiewicz: `C = L Lᵀ`. Fails with `(row, pivot)` at a pivot <= ~0.
fn cholesky(c: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, (usize, f64)> {
    let n = c.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = c[i][j];
            for (a, b) in l[i][..j].iter().zip(&l[j][..j]) {
                sum -= a * b;
            }
            if i == j {
                // A tiny positive pivot means a (numerically) singular matrix: refuse it too,
                // since it would make the correlated shocks degenerate.
                if sum <= 1e-12 {
                    return Err((i, sum));
                }
                l[i][j] = libm::sqrt(sum);
            } else {
                l[i][j] = sum / l[j][j];
            }
        }
    }
    Ok(l)
}

/// Identifies an overlay added to a process, for clearing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OverlayId(pub u64);

fn one() -> f64 {
    1.0
}

/// A deterministic scenario hook applied on top of the process (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Overlay {
    /// A coordinated move of `change` (−0.15 = −15 %), linear in log space over `duration`.
    Shock {
        /// When the move begins.
        start: UnixNanos,
        /// How long it takes (0 = instant).
        duration: Nanos,
        /// The total relative change, > −1.
        change: f64,
        /// The assets moved; empty = every floating (GBM) asset.
        #[serde(default)]
        assets: Vec<InstrumentId>,
    },
    /// A gradual depeg of a pegged asset to `target`, a hold, and a recovery.
    Depeg {
        /// The pegged asset.
        asset: InstrumentId,
        /// When the decline begins.
        start: UnixNanos,
        /// The price reached at the bottom, e.g. 0.92.
        target: Price,
        /// How long the decline takes.
        decline: Nanos,
        /// How long the bottom holds; `None` = until cleared.
        #[serde(default)]
        hold: Option<Nanos>,
        /// How long the recovery to the peg takes.
        recovery: Nanos,
    },
    /// A volatility regime: factors applied from `start` until cleared.
    VolRegime {
        /// When the regime begins.
        start: UnixNanos,
        /// The assets affected; empty = every floating (GBM) asset.
        #[serde(default)]
        assets: Vec<InstrumentId>,
        /// Multiplies volatility, >= 0.
        vol_factor: f64,
        /// Multiplies jump intensity, >= 0 (default 1).
        #[serde(default = "one")]
        jump_factor: f64,
    },
}

/// An overlay with its resolved targets and clearing state.
#[derive(Clone, Debug)]
struct ActiveOverlay {
    id: OverlayId,
    overlay: Overlay,
    /// Indices of the assets it acts on.
    targets: Vec<usize>,
    /// Shock: time at which it was stopped. Depeg: recovery start brought forward by a clear.
    cleared_at: Option<i64>,
}

/// Fraction of a linear ramp from `start` over `duration` completed at `t`, in [0, 1].
fn ramp(t: i64, start: i64, duration: i64) -> f64 {
    if t < start {
        0.0
    } else if duration <= 0 || t >= start.saturating_add(duration) {
        1.0
    } else {
        (t - start) as f64 / duration as f64
    }
}

impl ActiveOverlay {
    /// Shock: log offset at `t`. Only meaningful for shocks.
    fn shock_offset(&self, t: i64) -> f64 {
        match &self.overlay {
            Overlay::Shock {
                start,
                duration,
                change,
                ..
            } => {
                let t = self.cleared_at.map_or(t, |c| t.min(c));
                libm::log1p(*change) * ramp(t, start.0, duration.0)
            }
            _ => 0.0,
        }
    }

    /// Depeg: depth in [0, 1] at `t` (0 = at peg, 1 = at target).
    fn depeg_depth(&self, t: i64) -> f64 {
        let Overlay::Depeg {
            start,
            decline,
            hold,
            recovery,
            ..
        } = &self.overlay
        else {
            return 0.0;
        };
        let scheduled = hold.map(|h| start.0.saturating_add(decline.0).saturating_add(h.0));
        let recovery_start = match (scheduled, self.cleared_at) {
            (Some(s), Some(c)) => Some(s.min(c)),
            (s, c) => s.or(c),
        };
        match recovery_start {
            Some(rs) if t >= rs => {
                let level = ramp(rs, start.0, decline.0);
                level * (1.0 - ramp(t, rs, recovery.0))
            }
            _ => ramp(t, start.0, decline.0),
        }
    }

    /// True once the overlay can no longer change anything after `t`.
    fn finished(&self, t: i64) -> bool {
        match &self.overlay {
            Overlay::Shock {
                start, duration, ..
            } => self.cleared_at.is_some() || t >= start.0.saturating_add(duration.0.max(0)),
            Overlay::Depeg {
                start,
                decline,
                hold,
                recovery,
                ..
            } => {
                let scheduled = hold.map(|h| start.0.saturating_add(decline.0).saturating_add(h.0));
                let rs = match (scheduled, self.cleared_at) {
                    (Some(s), Some(c)) => Some(s.min(c)),
                    (s, c) => s.or(c),
                };
                rs.is_some_and(|rs| t >= rs.saturating_add(recovery.0.max(0)))
            }
            Overlay::VolRegime { .. } => false,
        }
    }
}

/// Per-asset model state.
#[derive(Clone, Debug)]
struct AssetState {
    config: AssetConfig,
    /// GBM: log of the price without unfinished shocks. Pegged: the OU level.
    state: f64,
    /// Pegged: the peg as a float.
    peg: f64,
    /// `exp(m + s²/2) − 1`, the mean relative jump.
    jump_k: f64,
    /// This asset's jump stream.
    jump_rng: DetRng,
}

/// The reference-price process: a pure function of its configuration, seed, the sequence of
/// `step` lengths and the overlays added (see the module docs for the models).
#[derive(Clone, Debug)]
pub struct ReferenceProcess {
    assets: Vec<AssetState>,
    chol: Vec<Vec<f64>>,
    diffusion_rng: DetRng,
    /// The second Box–Muller normal, kept for the next draw.
    spare_normal: Option<f64>,
    overlays: Vec<ActiveOverlay>,
    next_overlay: u64,
    now: UnixNanos,
    /// Scratch buffers, reused so steps do not allocate.
    eps: Vec<f64>,
    z: Vec<f64>,
}

impl ReferenceProcess {
    /// Builds the process at time `start`; random streams are forked from `rng`.
    pub fn new(
        config: &ReferenceConfig,
        start: UnixNanos,
        rng: &DetRng,
    ) -> Result<Self, ReferenceError> {
        let chol = config.validate()?;
        let assets = config
            .assets
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let price = a.price.raw() as f64 / 1e8;
                let peg = a.peg.unwrap_or(a.price).raw() as f64 / 1e8;
                AssetState {
                    config: a.clone(),
                    state: match a.kind {
                        AssetModel::Gbm => libm::log(price),
                        AssetModel::Pegged => price,
                    },
                    peg,
                    jump_k: libm::expm1(a.jump_mean + 0.5 * a.jump_std * a.jump_std),
                    jump_rng: rng.fork(1 + i as u64),
                }
            })
            .collect::<Vec<_>>();
        let n = assets.len();
        Ok(ReferenceProcess {
            assets,
            chol,
            diffusion_rng: rng.fork(0),
            spare_normal: None,
            overlays: Vec::new(),
            next_overlay: 1,
            now: start,
            eps: vec![0.0; n],
            z: vec![0.0; n],
        })
    }

    /// Builds the process from a bare seed.
    pub fn with_seed(
        config: &ReferenceConfig,
        start: UnixNanos,
        seed: u64,
    ) -> Result<Self, ReferenceError> {
        Self::new(config, start, &DetRng::new(seed))
    }

    /// The current simulated time.
    pub fn now(&self) -> UnixNanos {
        self.now
    }

    /// The asset symbols, in configuration order.
    pub fn symbols(&self) -> impl Iterator<Item = &InstrumentId> {
        self.assets.iter().map(|a| &a.config.symbol)
    }

    fn index(&self, symbol: &InstrumentId) -> Option<usize> {
        self.assets.iter().position(|a| &a.config.symbol == symbol)
    }

    /// Advances simulated time by `dt` (zero or negative: nothing happens).
    pub fn step(&mut self, dt: Nanos) {
        if dt.0 <= 0 {
            return;
        }
        let end = self.now.0.saturating_add(dt.0);
        // Regime starts inside the step split it, so the switch is exact.
        let mut cuts: Vec<i64> = self
            .overlays
            .iter()
            .filter_map(|o| match &o.overlay {
                Overlay::VolRegime { start, .. } if start.0 > self.now.0 && start.0 < end => {
                    Some(start.0)
                }
                _ => None,
            })
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts.push(end);
        for cut in cuts {
            let piece = cut - self.now.0;
            self.advance(piece);
        }
        self.absorb_finished();
    }

    /// One exact transition over `dt_ns` > 0 with the regime in force at `now`.
    fn advance(&mut self, dt_ns: i64) {
        let dt = dt_ns as f64 / YEAR_NANOS as f64;
        let n = self.assets.len();
        for i in 0..n {
            self.eps[i] = self.normal();
        }
        for i in 0..n {
            let mut s = 0.0;
            for k in 0..=i {
                s += self.chol[i][k] * self.eps[k];
            }
            self.z[i] = s;
        }
        let now = self.now.0;
        for i in 0..n {
            let (vol_factor, jump_factor) = self.regime_factors(i, now);
            let z = self.z[i];
            let a = &mut self.assets[i];
            let c = &a.config;
            match c.kind {
                AssetModel::Gbm => {
                    let sigma = c.volatility * vol_factor;
                    let lambda = c.jump_intensity * jump_factor;
                    let drift = (c.drift - 0.5 * sigma * sigma - lambda * a.jump_k) * dt;
                    let jumps = if lambda > 0.0 {
                        let count = poisson(&mut a.jump_rng, lambda * dt);
                        if count > 0 {
                            let nf = count as f64;
                            // The sum of `count` iid Normal(m, s²) is Normal(count·m, count·s²).
                            nf * c.jump_mean
                                + c.jump_std * libm::sqrt(nf) * standard_normal(&mut a.jump_rng)
                        } else {
                            0.0
                        }
                    } else {
                        0.0
                    };
                    a.state += drift + sigma * libm::sqrt(dt) * z + jumps;
                }
                AssetModel::Pegged => {
                    let theta = c.reversion;
                    let sigma = c.volatility * vol_factor * a.peg;
                    let decay = libm::exp(-theta * dt);
                    let sd = if theta > 0.0 {
                        sigma * libm::sqrt(-libm::expm1(-2.0 * theta * dt) / (2.0 * theta))
                    } else {
                        sigma * libm::sqrt(dt)
                    };
                    a.state = a.peg + (a.state - a.peg) * decay + sd * z;
                }
            }
        }
        self.now = UnixNanos(now + dt_ns);
    }

    /// Product of the volatility and jump factors of regimes in force for asset `i` at `t`.
    fn regime_factors(&self, i: usize, t: i64) -> (f64, f64) {
        let mut v = 1.0;
        let mut j = 1.0;
        for o in &self.overlays {
            if let Overlay::VolRegime {
                start,
                vol_factor,
                jump_factor,
                ..
            } = &o.overlay
                && t >= start.0
                && o.targets.contains(&i)
            {
                v *= vol_factor;
                j *= jump_factor;
            }
        }
        (v, j)
    }

    /// A standard normal from the diffusion stream (Box–Muller, pairs cached).
    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let (a, b) = box_muller(&mut self.diffusion_rng);
        self.spare_normal = Some(b);
        a
    }

    /// Folds completed shocks into the state and drops overlays that can no longer act.
    fn absorb_finished(&mut self) {
        let now = self.now.0;
        let mut i = 0;
        while i < self.overlays.len() {
            let o = &self.overlays[i];
            if !o.finished(now) {
                i += 1;
                continue;
            }
            let o = self.overlays.remove(i);
            if matches!(o.overlay, Overlay::Shock { .. }) {
                let off = o.shock_offset(now);
                for &t in &o.targets {
                    let a = &mut self.assets[t];
                    match a.config.kind {
                        AssetModel::Gbm => a.state += off,
                        // The shocked level becomes the OU state, which then reverts to the peg.
                        AssetModel::Pegged => a.state *= libm::exp(off),
                    }
                }
            }
        }
    }

    /// Adds an overlay; it acts according to its own times from now on.
    pub fn add_overlay(&mut self, overlay: Overlay) -> Result<OverlayId, ReferenceError> {
        let invalid = |field: &'static str, reason: &str| ReferenceError::InvalidOverlay {
            field,
            reason: reason.to_string(),
        };
        let resolve = |list: &[InstrumentId]| -> Result<Vec<usize>, ReferenceError> {
            if list.is_empty() {
                return Ok((0..self.assets.len())
                    .filter(|&i| self.assets[i].config.kind == AssetModel::Gbm)
                    .collect());
            }
            let mut out = Vec::with_capacity(list.len());
            for s in list {
                let i = self
                    .index(s)
                    .ok_or_else(|| ReferenceError::UnknownAsset(s.clone()))?;
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            Ok(out)
        };
        let targets = match &overlay {
            Overlay::Shock {
                duration,
                change,
                assets,
                ..
            } => {
                if !change.is_finite() || *change <= -1.0 {
                    return Err(invalid("change", "must be a finite number > -1"));
                }
                if duration.0 < 0 {
                    return Err(invalid("duration", "must not be negative"));
                }
                resolve(assets)?
            }
            Overlay::Depeg {
                asset,
                target,
                decline,
                hold,
                recovery,
                ..
            } => {
                let i = self
                    .index(asset)
                    .ok_or_else(|| ReferenceError::UnknownAsset(asset.clone()))?;
                if self.assets[i].config.kind != AssetModel::Pegged {
                    return Err(invalid("asset", "must be a pegged asset"));
                }
                if target.raw() <= 0 {
                    return Err(invalid("target", "must be positive"));
                }
                if decline.0 < 0 || recovery.0 < 0 || hold.is_some_and(|h| h.0 < 0) {
                    return Err(invalid("decline/hold/recovery", "must not be negative"));
                }
                vec![i]
            }
            Overlay::VolRegime {
                assets,
                vol_factor,
                jump_factor,
                ..
            } => {
                for (field, v) in [("vol_factor", vol_factor), ("jump_factor", jump_factor)] {
                    if !v.is_finite() || *v < 0.0 {
                        return Err(invalid(field, "must be a finite number >= 0"));
                    }
                }
                resolve(assets)?
            }
        };
        let id = OverlayId(self.next_overlay);
        self.next_overlay += 1;
        self.overlays.push(ActiveOverlay {
            id,
            overlay,
            targets,
            cleared_at: None,
        });
        self.absorb_finished();
        Ok(id)
    }

    /// Clears an overlay at the current time (see the module docs); false if it is not active.
    pub fn clear_overlay(&mut self, id: OverlayId) -> bool {
        let now = self.now.0;
        let Some(pos) = self.overlays.iter().position(|o| o.id == id) else {
            return false;
        };
        let o = &mut self.overlays[pos];
        match &o.overlay {
            Overlay::Shock { .. } => o.cleared_at = Some(now),
            Overlay::Depeg { start, .. } if now < start.0 => {
                self.overlays.remove(pos);
            }
            Overlay::Depeg { .. } => {
                if o.cleared_at.is_none() {
                    o.cleared_at = Some(now);
                }
            }
            Overlay::VolRegime { .. } => {
                self.overlays.remove(pos);
            }
        }
        self.absorb_finished();
        true
    }

    /// Clears every active overlay at the current time.
    pub fn clear_all_overlays(&mut self) {
        let ids: Vec<OverlayId> = self.overlays.iter().map(|o| o.id).collect();
        for id in ids {
            self.clear_overlay(id);
        }
    }

    /// The overlays still able to act, with their ids.
    pub fn overlays(&self) -> impl Iterator<Item = (OverlayId, &Overlay)> {
        self.overlays.iter().map(|o| (o.id, &o.overlay))
    }

    /// The unrounded model value of asset `i` at the current time, overlays included.
    fn value_at(&self, i: usize) -> f64 {
        let now = self.now.0;
        let a = &self.assets[i];
        let mut log_offset = 0.0;
        let mut factor = 1.0;
        for o in &self.overlays {
            if !o.targets.contains(&i) {
                continue;
            }
            match &o.overlay {
                Overlay::Shock { .. } => log_offset += o.shock_offset(now),
                Overlay::Depeg { target, .. } => {
                    let ratio = target.raw() as f64 / 1e8 / a.peg;
                    factor *= 1.0 + (ratio - 1.0) * o.depeg_depth(now);
                }
                Overlay::VolRegime { .. } => {}
            }
        }
        match a.config.kind {
            AssetModel::Gbm => libm::exp(a.state + log_offset),
            AssetModel::Pegged => a.state * libm::exp(log_offset) * factor,
        }
    }

    /// The unrounded model value of `symbol` (for diagnostics; money uses [`Self::price`]).
    pub fn value(&self, symbol: &InstrumentId) -> Option<f64> {
        self.index(symbol).map(|i| self.value_at(i))
    }

    /// The current price of `symbol`, rounded to 8 decimals.
    pub fn price(&self, symbol: &InstrumentId) -> Option<Price> {
        self.value(symbol).map(f64_to_price)
    }

    /// The current price of `symbol` rounded to the nearest multiple of `tick` (at least one
    /// tick); a non-positive tick means 8 decimals.
    pub fn price_on_tick(&self, symbol: &InstrumentId, tick: Price) -> Option<Price> {
        self.value(symbol).map(|v| to_tick(v, tick.raw()))
    }

    /// Every asset's current price, in configuration order.
    pub fn prices(&self) -> Vec<(InstrumentId, Price)> {
        (0..self.assets.len())
            .map(|i| {
                (
                    self.assets[i].config.symbol.clone(),
                    f64_to_price(self.value_at(i)),
                )
            })
            .collect()
    }

    /// The volatility in force for `symbol` now (configured value times active regimes).
    pub fn effective_volatility(&self, symbol: &InstrumentId) -> Option<f64> {
        let i = self.index(symbol)?;
        Some(self.assets[i].config.volatility * self.regime_factors(i, self.now.0).0)
    }
}

/// Two independent standard normals from two uniforms (Box–Muller).
fn box_muller(rng: &mut DetRng) -> (f64, f64) {
    // 1 − u lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.next_f64();
    let u2 = rng.next_f64();
    let r = libm::sqrt(-2.0 * libm::log(u1));
    let theta = 2.0 * std::f64::consts::PI * u2;
    (r * libm::cos(theta), r * libm::sin(theta))
}

/// One standard normal (the second Box–Muller value is discarded: jump sizes are rare).
fn standard_normal(rng: &mut DetRng) -> f64 {
    box_muller(rng).0
}

/// A Poisson(`mean`) count: Knuth's product of uniforms for small means, a rounded normal
/// approximation above [`POISSON_KNUTH_MAX`] (steps that long are unusual).
fn poisson(rng: &mut DetRng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > POISSON_KNUTH_MAX {
        let x = mean + libm::sqrt(mean) * standard_normal(rng);
        return libm::round(x).max(0.0) as u64;
    }
    let limit = libm::exp(-mean);
    let mut k = 0u64;
    let mut p = 1.0;
    loop {
        p *= rng.next_f64();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

#[cfg(test)]
mod tests;
