//! `tradestack backtest`: one strategy over recorded market data, in
//! simulated time, with a report folder (JSON, summary, P&L plot).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use tradestack_config::Config;
use tradestack_marketdata::replay::SymbolMap;
use tradestack_marketdata::replay::load::load;
use tradestack_model::{Amount, Nanos, UnixNanos};
use tradestack_trading::StrategyConfig;
use tradestack_trading::backtest::{BacktestSpec, run};
use tradestack_trading::report::{plot_svg, summary};

/// Options of `tradestack backtest`.
#[derive(clap::Args)]
pub struct BacktestOptions {
    /// A configured `[[strategies]]` id, or a built-in kind
    /// (market_maker, ma_crossover, mean_reversion, peg_arb).
    #[arg(long)]
    pub strategy: String,
    /// Recorded files (Tardis, Binance klines or depth, FTX, LOBSTER).
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// First event time: RFC 3339 or Unix nanoseconds.
    #[arg(long)]
    pub from: Option<String>,
    /// End time (exclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// A strategy parameter, key=value (repeatable), e.g. --set size=0.01.
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// What the account starts with, in every asset.
    #[arg(long, default_value = "1000000")]
    pub funding: String,
    /// The report folder (default: backtest-<id>).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// The strategy to test: a configured `[[strategies]]` entry by id, or a
/// built-in kind, with `--set` overrides on top.
fn strategy(config: &Config, name: &str, set: &[String]) -> anyhow::Result<StrategyConfig> {
    let mut table = config
        .strategies
        .iter()
        .find(|s| s.get("id").and_then(|v| v.as_str()) == Some(name))
        .cloned()
        .unwrap_or_else(|| {
            let mut t = toml::Table::new();
            t.insert("id".into(), name.into());
            t.insert("account".into(), "backtest".into());
            t.insert("kind".into(), name.into());
            t
        });
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv}: expected key=value"))?;
        // A TOML value when it parses as one (integers, booleans, arrays),
        // else text; decimals stay text, as prices and sizes are exact.
        let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_float())
            .unwrap_or_else(|| toml::Value::String(v.to_string()));
        table.insert(k.trim().to_string(), value);
    }
    let text = toml::to_string(&table)?;
    toml::from_str::<StrategyConfig>(&text).map_err(|e| {
        anyhow::anyhow!(
            "strategy {name}: {} (a configured [[strategies]] id, or one of market_maker, ma_crossover, mean_reversion, peg_arb with --set for its parameters)",
            e.message()
        )
    })
}

/// RFC 3339 (`2020-02-22T00:01:00Z`) or Unix nanoseconds.
fn time(flag: &str, text: &str) -> anyhow::Result<UnixNanos> {
    if let Ok(ns) = text.parse::<i64>() {
        return Ok(UnixNanos(ns));
    }
    let t = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("{flag} {text}: expected RFC 3339 time or Unix nanoseconds"))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .with_context(|| format!("{flag} {text}: before 1970"))?;
    Ok(UnixNanos(Nanos::from_std(d).0))
}

/// Runs the backtest and writes the report.
pub fn backtest(config: &Config, opts: BacktestOptions) -> anyhow::Result<ExitCode> {
    let strategy = strategy(config, &opts.strategy, &opts.set)?;
    let funding: Amount = opts
        .funding
        .parse()
        .map_err(|e| anyhow::anyhow!("--funding {}: {e}", opts.funding))?;
    let from = opts
        .from
        .as_deref()
        .map(|t| time("--from", t))
        .transpose()?;
    let to = opts.to.as_deref().map(|t| time("--to", t)).transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        bail!("--to must be after --from");
    }
    let timeline = load(&opts.data, &SymbolMap::new())?;
    if !timeline.errors.is_empty() {
        eprintln!(
            "{} rows skipped while reading the data (first: {})",
            timeline.errors.len(),
            timeline.errors[0]
        );
    }
    let spec = BacktestSpec {
        strategy,
        from,
        to,
        funding,
        sample_every: Nanos::MINUTE,
    };
    let report = run(&spec, &timeline.events)?;
    let dir = opts
        .report
        .unwrap_or_else(|| PathBuf::from(format!("backtest-{}", report.strategy)));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = summary(&report);
    let files = [
        ("report.json", serde_json::to_string_pretty(&report)? + "\n"),
        ("summary.txt", text.clone()),
        ("pnl.svg", plot_svg(&report)),
    ];
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{text}");
    println!("  report      {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
