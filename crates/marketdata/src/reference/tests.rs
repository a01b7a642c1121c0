use super::*;

const MIN: Nanos = Nanos::MINUTE;
const HOUR: Nanos = Nanos::HOUR;

fn p(s: &str) -> Price {
    s.parse().unwrap()
}

fn id(s: &str) -> InstrumentId {
    InstrumentId::new(s)
}

fn price_f64(proc_: &ReferenceProcess, s: &str) -> f64 {
    proc_.price(&id(s)).unwrap().raw() as f64 / 1e8
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn variance(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64
}

fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    let mut sxy = 0.0;
    let mut sxx = 0.0;
    let mut syy = 0.0;
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// Log returns of `symbols` read as rounded prices after each of `steps` steps of `dt`.
fn simulate_returns(
    proc_: &mut ReferenceProcess,
    symbols: &[&str],
    dt: Nanos,
    steps: usize,
) -> Vec<Vec<f64>> {
    let mut last: Vec<f64> = symbols.iter().map(|s| price_f64(proc_, s)).collect();
    let mut out = vec![Vec::with_capacity(steps); symbols.len()];
    for _ in 0..steps {
        proc_.step(dt);
        for (k, s) in symbols.iter().enumerate() {
            let v = price_f64(proc_, s);
            out[k].push((v / last[k]).ln());
            last[k] = v;
        }
    }
    out
}

fn two_assets(vol_a: f64, vol_b: f64, rho: f64) -> ReferenceConfig {
    ReferenceConfig {
        assets: vec![
            AssetConfig::gbm("A-USD", p("42000"), vol_a, 0.0),
            AssetConfig::gbm("B-USD", p("2500"), vol_b, 0.0),
        ],
        correlation: Some(vec![vec![1.0, rho], vec![rho, 1.0]]),
    }
}

#[test]
fn same_seed_same_steps_same_prices() {
    let cfg = ReferenceConfig::default();
    let run = |seed: u64| {
        let mut r = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, seed).unwrap();
        let mut path = Vec::new();
        for k in 0..2_000i64 {
            // Irregular steps, to exercise non-uniform dt.
            r.step(Nanos(1_000_000_000 + (k % 7) * 13_000_000));
            path.push(r.prices());
        }
        path
    };
    let a = run(7);
    assert_eq!(a, run(7));
    let b = run(8);
    assert_ne!(a.last(), b.last());
    // Every asset actually moves.
    for (x, y) in a[0].iter().zip(a.last().unwrap()) {
        assert_ne!(x.1, y.1, "{} never moved", x.0);
    }
}

#[test]
fn initial_prices_are_the_configured_ones() {
    let cfg = ReferenceConfig::default();
    let r = ReferenceProcess::with_seed(&cfg, UnixNanos(5), 1).unwrap();
    let prices = r.prices();
    for (a, (s, px)) in cfg.assets.iter().zip(prices) {
        assert_eq!(a.symbol, s);
        assert_eq!(a.price, px);
    }
    assert_eq!(r.now(), UnixNanos(5));
}

#[test]
fn config_parses_from_toml() {
    let text = r#"
        [marketdata]
        correlation = [[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 1.0]]

        [[marketdata.assets]]
        symbol = "BTC-USD"
        price = "42000"
        volatility = 0.6
        drift = 0.0
        jump_intensity = 4.0
        jump_mean = -0.01
        jump_std = 0.03

        [[marketdata.assets]]
        symbol = "ETH-USD"
        price = "2500.5"
        volatility = 0.8

        [[marketdata.assets]]
        symbol = "USDT-USD"
        kind = "pegged"
        price = "1"
        peg = "1"
        reversion = 50.0
        volatility = 0.01
    "#;
    #[derive(Deserialize)]
    struct Root {
        marketdata: ReferenceConfig,
    }
    let root: Root = toml::from_str(text).unwrap();
    let cfg = root.marketdata;
    assert_eq!(cfg.assets.len(), 3);
    assert_eq!(cfg.assets[0].jump_mean, -0.01);
    assert_eq!(cfg.assets[1].price, p("2500.5"));
    assert_eq!(cfg.assets[1].kind, AssetModel::Gbm);
    assert_eq!(cfg.assets[2].kind, AssetModel::Pegged);
    assert_eq!(cfg.assets[2].peg, Some(p("1")));
    let l = cfg.validate().unwrap();
    assert!((l[1][0] - 0.8).abs() < 1e-12);
    assert!((l[1][1] - 0.6).abs() < 1e-12);

    // A float price is refused: prices are decimal strings.
    let bad = text.replace("price = \"42000\"", "price = 42000.5");
    assert!(toml::from_str::<Root>(&bad).is_err());
    // Unknown fields are refused rather than ignored.
    let bad = text.replace("drift = 0.0", "drfit = 0.0");
    assert!(toml::from_str::<Root>(&bad).is_err());
}

#[test]
fn default_config_is_valid_and_round_trips() {
    let cfg = ReferenceConfig::default();
    let l = cfg.validate().unwrap();
    // L Lᵀ reproduces the matrix.
    let c = cfg.correlation.as_ref().unwrap();
    for i in 0..c.len() {
        for j in 0..c.len() {
            let v: f64 = (0..c.len()).map(|k| l[i][k] * l[j][k]).sum();
            assert!((v - c[i][j]).abs() < 1e-12);
        }
    }
    let json = serde_json::to_string(&cfg).unwrap();
    assert_eq!(serde_json::from_str::<ReferenceConfig>(&json).unwrap(), cfg);
}

#[test]
fn invalid_correlation_matrices_are_refused_clearly() {
    let mut cfg = two_assets(0.5, 0.5, 0.5);
    cfg.correlation = Some(vec![vec![1.0, 0.5], vec![0.4, 1.0]]);
    assert!(matches!(
        cfg.validate(),
        Err(ReferenceError::NotSymmetric { i: 0, j: 1, .. })
    ));
    cfg.correlation = Some(vec![vec![1.0, 0.5], vec![0.5, 0.9]]);
    assert!(matches!(
        cfg.validate(),
        Err(ReferenceError::DiagonalNotOne { i: 1, .. })
    ));
    cfg.correlation = Some(vec![vec![1.0, 1.5], vec![1.5, 1.0]]);
    assert!(matches!(
        cfg.validate(),
        Err(ReferenceError::CorrelationOutOfRange { .. })
    ));
    cfg.correlation = Some(vec![vec![1.0, 0.5]]);
    assert!(matches!(
        cfg.validate(),
        Err(ReferenceError::CorrelationShape { expected: 2, .. })
    ));
    // Perfect correlation is singular: refused.
    cfg.correlation = Some(vec![vec![1.0, 1.0], vec![1.0, 1.0]]);
    assert!(matches!(
        cfg.validate(),
        Err(ReferenceError::NotPositiveDefinite { row: 1, .. })
    ));
    // Pairwise plausible but jointly impossible.
    let mut three = ReferenceConfig::default();
    three.assets.truncate(3);
    three.correlation = Some(vec![
        vec![1.0, 0.9, 0.9],
        vec![0.9, 1.0, -0.9],
        vec![0.9, -0.9, 1.0],
    ]);
    let err = three.validate().unwrap_err();
    assert!(matches!(
        err,
        ReferenceError::NotPositiveDefinite { row: 2, .. }
    ));
    assert!(err.to_string().contains("SOL-USD"), "{err}");
}

#[test]
fn invalid_parameters_are_refused() {
    let mut cfg = two_assets(0.5, 0.5, 0.5);
    cfg.assets[0].volatility = -0.1;
    assert!(matches!(
        cfg.validate(),
        Err(ReferenceError::InvalidParameter {
            field: "volatility",
            ..
        })
    ));
    let mut cfg = two_assets(0.5, 0.5, 0.5);
    cfg.assets[1].symbol = id("A-USD");
    assert!(matches!(
        cfg.validate(),
        Err(ReferenceError::DuplicateAsset(_))
    ));
    let mut cfg = two_assets(0.5, 0.5, 0.5);
    cfg.assets[0].price = Price::ZERO;
    assert!(cfg.validate().is_err());
    let empty = ReferenceConfig {
        assets: vec![],
        correlation: None,
    };
    assert_eq!(empty.validate().unwrap_err(), ReferenceError::NoAssets);
}

#[test]
fn realised_volatility_and_correlation_match_the_configuration() {
    let cfg = two_assets(0.6, 0.8, 0.8);
    let mut r = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 2024).unwrap();
    // One year of 5-minute steps.
    let dt = Nanos(5 * MIN.0);
    let steps = (YEAR_NANOS / dt.0) as usize;
    let rets = simulate_returns(&mut r, &["A-USD", "B-USD"], dt, steps);
    let per_year = steps as f64;
    let vol_a = (variance(&rets[0]) * per_year).sqrt();
    let vol_b = (variance(&rets[1]) * per_year).sqrt();
    // Standard error of a realised vol over n returns is about σ/√(2n) ≈ 0.2 %.
    assert!((vol_a - 0.6).abs() < 0.6 * 0.03, "vol A {vol_a}");
    assert!((vol_b - 0.8).abs() < 0.8 * 0.03, "vol B {vol_b}");
    let rho = correlation(&rets[0], &rets[1]);
    assert!((rho - 0.8).abs() < 0.02, "correlation {rho}");
}

#[test]
fn jumps_add_their_variance() {
    // σ² + λ(m² + s²) = 0.09 + 50 · 0.0025 = 0.215 per year; without jumps it would be 0.09.
    let cfg = ReferenceConfig {
        assets: vec![AssetConfig::gbm("J-USD", p("100"), 0.3, 0.0).with_jumps(50.0, 0.0, 0.05)],
        correlation: None,
    };
    let mut r = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 99).unwrap();
    let years = 10;
    let steps = years * 8_760;
    let rets = simulate_returns(&mut r, &["J-USD"], HOUR, steps);
    let annual_var = rets[0].iter().map(|x| x * x).sum::<f64>() / years as f64;
    assert!((annual_var - 0.215).abs() < 0.215 * 0.15, "{annual_var}");
    // Fat tails: far more 5-sigma hourly moves than a Gaussian would give (~0).
    let sd = (0.09f64 / 8_760.0).sqrt();
    let big = rets[0].iter().filter(|x| x.abs() > 5.0 * sd).count();
    assert!(big > 100, "{big}");
}

#[test]
fn drift_is_the_expected_total_return_with_jumps() {
    // E[S(1)] = S(0) e^μ, thanks to the −σ²/2 and −λk compensators. Dropping either would
    // move the mean by more than 0.04 (e^0.145 or e^-0.076), the tolerance is 0.03.
    let cfg = ReferenceConfig {
        assets: vec![AssetConfig::gbm("D-USD", p("100"), 0.3, 0.1).with_jumps(4.0, -0.05, 0.1)],
        correlation: None,
    };
    let base = DetRng::new(5);
    let paths = 4_000;
    let mut sum = 0.0;
    for k in 0..paths {
        let mut r = ReferenceProcess::new(&cfg, UnixNanos::ZERO, &base.fork(k)).unwrap();
        for _ in 0..12 {
            r.step(Nanos(YEAR_NANOS / 12));
        }
        sum += price_f64(&r, "D-USD") / 100.0;
    }
    let m = sum / paths as f64;
    assert!((m - 0.1f64.exp()).abs() < 0.03, "mean growth {m}");
}

#[test]
fn pegged_asset_stays_near_its_peg() {
    let cfg = ReferenceConfig::default();
    let mut r = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 3).unwrap();
    let mut xs = Vec::new();
    for _ in 0..(YEAR_NANOS / (10 * MIN.0)) {
        r.step(Nanos(10 * MIN.0));
        xs.push(price_f64(&r, "USDT-USD"));
    }
    let worst = xs.iter().map(|x| (x - 1.0).abs()).fold(0.0, f64::max);
    assert!(worst < 0.01, "max deviation {worst}");
    assert!((mean(&xs) - 1.0).abs() < 0.0007, "mean {}", mean(&xs));
    // Stationary sd = σ/√(2θ) = 0.01/10 = 0.001.
    let sd = variance(&xs).sqrt();
    assert!((sd - 0.001).abs() < 0.0004, "sd {sd}");
    // And a floating asset does wander off far more than that.
    let btc = price_f64(&r, "BTC-USD");
    assert!((btc / 42_000.0 - 1.0).abs() > 0.01);
}

#[test]
fn pegged_asset_reverts_from_a_displaced_start() {
    let mut a = AssetConfig::pegged("USDT-USD", p("1"), 50.0, 0.01);
    a.price = p("0.95");
    let cfg = ReferenceConfig {
        assets: vec![a],
        correlation: None,
    };
    let mut r = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 11).unwrap();
    r.step(Nanos::DAY);
    // 1 − 0.05 e^{−50/365} ≈ 0.9565 after one day: still far from the peg.
    let one_day = price_f64(&r, "USDT-USD");
    assert!((0.95..0.97).contains(&one_day), "{one_day}");
    for _ in 0..29 {
        r.step(Nanos::DAY);
    }
    let month = price_f64(&r, "USDT-USD");
    assert!((month - 1.0).abs() < 0.005, "{month}");
}

#[test]
fn shock_moves_all_floating_assets_by_the_configured_change() {
    let cfg = ReferenceConfig::default();
    let t0 = UnixNanos::from_secs(1_700_000_000);
    let mut base = ReferenceProcess::with_seed(&cfg, t0, 42).unwrap();
    let mut shocked = base.clone();
    shocked
        .add_overlay(Overlay::Shock {
            start: t0 + HOUR,
            duration: Nanos(10 * MIN.0),
            change: -0.15,
            assets: vec![],
        })
        .unwrap();
    let ratio = |a: &ReferenceProcess, b: &ReferenceProcess, s: &str| {
        a.value(&id(s)).unwrap() / b.value(&id(s)).unwrap()
    };
    let floating = ["BTC-USD", "ETH-USD", "SOL-USD"];
    for minute in 1..=180 {
        shocked.step(MIN);
        base.step(MIN);
        let expected = match minute {
            m if m <= 60 => 1.0,
            // Linear in log space: half way through, the factor is √0.85.
            65 => 0.85f64.sqrt(),
            m if m >= 70 => 0.85,
            _ => continue,
        };
        for s in floating {
            let r = ratio(&shocked, &base, s);
            assert!((r - expected).abs() < 1e-9, "{s} minute {minute}: {r}");
            // The rounded prices carry the same move.
            let pr = price_f64(&shocked, s) / price_f64(&base, s);
            assert!((pr - expected).abs() < 1e-6, "{s} minute {minute}: {pr}");
        }
        assert_eq!(
            shocked.price(&id("USDT-USD")),
            base.price(&id("USDT-USD")),
            "stablecoins are not in an unlisted shock"
        );
    }
    // Once complete, the shock has become part of the state.
    assert_eq!(shocked.overlays().count(), 0);
}

#[test]
fn a_listed_shock_moves_only_its_assets() {
    let cfg = ReferenceConfig::default();
    let mut base = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 1).unwrap();
    let mut shocked = base.clone();
    shocked
        .add_overlay(Overlay::Shock {
            start: UnixNanos::ZERO,
            duration: Nanos::ZERO,
            change: 0.10,
            assets: vec![id("ETH-USD")],
        })
        .unwrap();
    base.step(MIN);
    shocked.step(MIN);
    let r = shocked.value(&id("ETH-USD")).unwrap() / base.value(&id("ETH-USD")).unwrap();
    assert!((r - 1.10).abs() < 1e-9);
    assert_eq!(shocked.price(&id("BTC-USD")), base.price(&id("BTC-USD")));
}

#[test]
fn clearing_a_shock_keeps_the_move_made_so_far() {
    let cfg = ReferenceConfig::default();
    let mut base = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 1).unwrap();
    let mut shocked = base.clone();
    let id_ = shocked
        .add_overlay(Overlay::Shock {
            start: UnixNanos::ZERO,
            duration: Nanos(10 * MIN.0),
            change: -0.19,
            assets: vec![],
        })
        .unwrap();
    for _ in 0..5 {
        base.step(MIN);
        shocked.step(MIN);
    }
    assert!(shocked.clear_overlay(id_));
    assert!(!shocked.clear_overlay(id_));
    for _ in 0..30 {
        base.step(MIN);
        shocked.step(MIN);
    }
    let r = shocked.value(&id("BTC-USD")).unwrap() / base.value(&id("BTC-USD")).unwrap();
    assert!((r - 0.81f64.sqrt()).abs() < 1e-9, "{r}");
}

#[test]
fn depeg_declines_holds_and_recovers() {
    let cfg = ReferenceConfig::default();
    let mut base = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 8).unwrap();
    let mut dep = base.clone();
    dep.add_overlay(Overlay::Depeg {
        asset: id("USDT-USD"),
        start: UnixNanos::ZERO + HOUR,
        target: p("0.92"),
        decline: Nanos(36 * HOUR.0),
        hold: Some(Nanos(12 * HOUR.0)),
        recovery: Nanos(24 * HOUR.0),
    })
    .unwrap();
    let usdt = id("USDT-USD");
    for hour in 1..=100 {
        base.step(HOUR);
        dep.step(HOUR);
        let r = dep.value(&usdt).unwrap() / base.value(&usdt).unwrap();
        // Piecewise linear in price: 1 → 0.92 over hours 1..37, hold to 49, back by 73.
        let expected = match hour {
            h if h <= 1 => 1.0,
            h if h <= 37 => 1.0 - 0.08 * (h - 1) as f64 / 36.0,
            h if h <= 49 => 0.92,
            h if h <= 73 => 0.92 + 0.08 * (h - 49) as f64 / 24.0,
            _ => 1.0,
        };
        assert!(
            (r - expected).abs() < 1e-12,
            "hour {hour}: {r} vs {expected}"
        );
        if (37..=49).contains(&hour) {
            let px = price_f64(&dep, "USDT-USD");
            assert!((px - 0.92).abs() < 0.01, "hour {hour}: {px}");
        }
        // Other assets are untouched.
        assert_eq!(dep.price(&id("BTC-USD")), base.price(&id("BTC-USD")));
    }
    assert_eq!(dep.overlays().count(), 0, "a recovered depeg ends");
}

#[test]
fn clearing_an_open_ended_depeg_starts_the_recovery() {
    let cfg = ReferenceConfig::default();
    let mut base = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 8).unwrap();
    let mut dep = base.clone();
    let oid = dep
        .add_overlay(Overlay::Depeg {
            asset: id("USDT-USD"),
            start: UnixNanos::ZERO,
            target: p("0.9"),
            decline: Nanos(10 * HOUR.0),
            hold: None,
            recovery: Nanos(10 * HOUR.0),
        })
        .unwrap();
    let usdt = id("USDT-USD");
    let ratio = |a: &ReferenceProcess, b: &ReferenceProcess| {
        a.value(&usdt).unwrap() / b.value(&usdt).unwrap()
    };
    for _ in 0..100 {
        base.step(HOUR);
        dep.step(HOUR);
    }
    // Held indefinitely.
    assert!((ratio(&dep, &base) - 0.9).abs() < 1e-12);
    assert!(dep.clear_overlay(oid));
    // No jump on clear.
    assert!((ratio(&dep, &base) - 0.9).abs() < 1e-12);
    for _ in 0..5 {
        base.step(HOUR);
        dep.step(HOUR);
    }
    assert!((ratio(&dep, &base) - 0.95).abs() < 1e-12);
    for _ in 0..5 {
        base.step(HOUR);
        dep.step(HOUR);
    }
    assert!((ratio(&dep, &base) - 1.0).abs() < 1e-12);
    assert_eq!(dep.overlays().count(), 0);
}

#[test]
fn volatility_regime_multiplies_realised_volatility_until_cleared() {
    let cfg = two_assets(0.5, 0.5, 0.0);
    let mut r = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 77).unwrap();
    let half = Nanos(YEAR_NANOS / 2);
    let oid = r
        .add_overlay(Overlay::VolRegime {
            start: UnixNanos::ZERO + half,
            assets: vec![id("A-USD")],
            vol_factor: 3.0,
            jump_factor: 1.0,
        })
        .unwrap();
    let dt = Nanos(10 * MIN.0);
    let steps = (half.0 / dt.0) as usize;
    let calm = simulate_returns(&mut r, &["A-USD", "B-USD"], dt, steps);
    assert_eq!(r.effective_volatility(&id("A-USD")), Some(1.5));
    let wild = simulate_returns(&mut r, &["A-USD", "B-USD"], dt, steps);
    let ann = |x: &[f64]| (variance(x) * 2.0 * steps as f64).sqrt();
    assert!((ann(&calm[0]) - 0.5).abs() < 0.03, "{}", ann(&calm[0]));
    assert!((ann(&wild[0]) - 1.5).abs() < 0.09, "{}", ann(&wild[0]));
    assert!(
        (ann(&wild[1]) - 0.5).abs() < 0.03,
        "unlisted asset unchanged"
    );
    assert!(r.clear_overlay(oid));
    assert_eq!(r.effective_volatility(&id("A-USD")), Some(0.5));
    let after = simulate_returns(&mut r, &["A-USD"], dt, steps);
    assert!((ann(&after[0]) - 0.5).abs() < 0.03, "{}", ann(&after[0]));
}

#[test]
fn a_regime_starting_inside_a_step_switches_at_its_exact_time() {
    let cfg = ReferenceConfig::default();
    let regime = Overlay::VolRegime {
        start: UnixNanos::ZERO + HOUR,
        assets: vec![],
        vol_factor: 4.0,
        jump_factor: 2.0,
    };
    let mut one = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 4).unwrap();
    one.add_overlay(regime.clone()).unwrap();
    let mut two = one.clone();
    one.step(Nanos(2 * HOUR.0));
    two.step(HOUR);
    two.step(HOUR);
    assert_eq!(one.prices(), two.prices());
    // Without the regime the path differs.
    let mut plain = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 4).unwrap();
    plain.step(HOUR);
    plain.step(HOUR);
    assert_ne!(plain.prices(), two.prices());
}

#[test]
fn invalid_overlays_are_refused() {
    let cfg = ReferenceConfig::default();
    let mut r = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 1).unwrap();
    let unknown = r.add_overlay(Overlay::Shock {
        start: UnixNanos::ZERO,
        duration: MIN,
        change: -0.1,
        assets: vec![id("DOGE-USD")],
    });
    assert_eq!(unknown, Err(ReferenceError::UnknownAsset(id("DOGE-USD"))));
    let wipeout = r.add_overlay(Overlay::Shock {
        start: UnixNanos::ZERO,
        duration: MIN,
        change: -1.0,
        assets: vec![],
    });
    assert!(matches!(
        wipeout,
        Err(ReferenceError::InvalidOverlay {
            field: "change",
            ..
        })
    ));
    let depeg_btc = r.add_overlay(Overlay::Depeg {
        asset: id("BTC-USD"),
        start: UnixNanos::ZERO,
        target: p("1"),
        decline: MIN,
        hold: None,
        recovery: MIN,
    });
    assert!(matches!(
        depeg_btc,
        Err(ReferenceError::InvalidOverlay { field: "asset", .. })
    ));
    assert_eq!(r.overlays().count(), 0);
}

#[test]
fn overlays_deserialize_from_toml() {
    #[derive(Deserialize)]
    struct Scenario {
        overlays: Vec<Overlay>,
    }
    let s: Scenario = toml::from_str(
        r#"
        [[overlays]]
        kind = "shock"
        start = 3600000000000
        duration = 600000000000
        change = -0.15

        [[overlays]]
        kind = "depeg"
        asset = "USDT-USD"
        start = 0
        target = "0.92"
        decline = 129600000000000
        hold = 3600000000000
        recovery = 86400000000000

        [[overlays]]
        kind = "vol_regime"
        start = 0
        vol_factor = 2.5
        "#,
    )
    .unwrap();
    assert_eq!(s.overlays.len(), 3);
    assert!(matches!(
        &s.overlays[1],
        Overlay::Depeg { target, hold: Some(_), .. } if *target == p("0.92")
    ));
    assert!(matches!(
        s.overlays[2],
        Overlay::VolRegime { jump_factor, .. } if jump_factor == 1.0
    ));
    let mut r =
        ReferenceProcess::with_seed(&ReferenceConfig::default(), UnixNanos::ZERO, 1).unwrap();
    for o in s.overlays {
        r.add_overlay(o).unwrap();
    }
    assert_eq!(r.overlays().count(), 3);
}

#[test]
fn prices_on_a_tick_are_multiples_of_it() {
    let cfg = ReferenceConfig::default();
    let mut r = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, 1).unwrap();
    let tick = p("0.5");
    for _ in 0..100 {
        r.step(MIN);
        let t = r.price_on_tick(&id("BTC-USD"), tick).unwrap();
        let exact = r.price(&id("BTC-USD")).unwrap();
        assert!(t.is_multiple_of(tick));
        assert!((t.raw() - exact.raw()).abs() <= tick.raw() / 2);
    }
    assert_eq!(r.price(&id("NOPE")), None);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    #[test]
    fn prices_stay_positive_and_reproducible(
        seed in proptest::num::u64::ANY,
        steps in proptest::collection::vec(1i64..=86_400_000_000_000, 1..50),
    ) {
        let cfg = ReferenceConfig::default();
        let mut a = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, seed).unwrap();
        let mut b = ReferenceProcess::with_seed(&cfg, UnixNanos::ZERO, seed).unwrap();
        for dt in steps {
            a.step(Nanos(dt));
            b.step(Nanos(dt));
            let pa = a.prices();
            proptest::prop_assert_eq!(&pa, &b.prices());
            for (_, px) in pa {
                proptest::prop_assert!(px.raw() > 0);
            }
        }
    }
}
