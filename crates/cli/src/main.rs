//! `tradestack`: run the whole ecosystem in one process (`up`), one service
//! on real engines (`serve`), and inspect a running deployment (`status`,
//! `health`, `config show`, `version`).

mod commands;
mod services;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// A trading ecosystem in one binary.
#[derive(Parser)]
#[command(name = "tradestack", version, about, disable_version_flag = false)]
struct Cli {
    /// Configuration file (default: $TRADESTACK_CONFIG, else ./tradestack.toml if present).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every service in this process on the configured (embedded by default) engines.
    Up,
    /// Runs one service as its own process.
    Serve {
        /// The service to run: registry, exchange, marketdata, risk, strategy or custodian.
        service: String,
    },
    /// Prints the registered services: address, health, uptime and version.
    Status {
        /// Registry URL (default: `registry.url` from the configuration).
        #[arg(long)]
        registry: Option<String>,
    },
    /// Exits non-zero when a required service is missing or not ready.
    Health {
        /// Registry URL (default: `registry.url` from the configuration).
        #[arg(long)]
        registry: Option<String>,
        /// Check only the service at this base URL (its `/readyz`), as a container health check does.
        #[arg(long, conflicts_with = "registry")]
        url: Option<String>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Benchmarks against a running deployment, or one started here.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
    /// Exchange utilities.
    Exchange {
        #[command(subcommand)]
        command: ExchangeCommand,
    },
    /// Runs SQL against the market-data service and prints a table.
    Query {
        /// The statement, e.g. "SELECT count(*) FROM trades".
        sql: String,
        /// The market-data service (default: its configured address).
        #[arg(long)]
        url: Option<String>,
    },
    /// Imports a CSV file (header row first) into a table, with a progress bar.
    Import {
        /// The CSV file.
        file: std::path::PathBuf,
        /// The table (default: the file name).
        #[arg(long)]
        table: Option<String>,
        /// The designated timestamp column (default: `timestamp`).
        #[arg(long)]
        timestamp: Option<String>,
        /// The market-data service (default: its configured address).
        #[arg(long)]
        url: Option<String>,
    },
    /// Replays recorded market data (Tardis, Binance klines or depth, FTX,
    /// LOBSTER; the format is detected) onto the market-data feed.
    Replay {
        /// The files, as the service sees them (depth: the snapshot file; its
        /// updates file must sit beside it).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// max (simulated time), realtime, or a multiple such as 10x.
        #[arg(long, default_value = "max")]
        speed: String,
        /// Do not store what is replayed.
        #[arg(long)]
        no_record: bool,
        /// A venue symbol's instrument, e.g. XBTUSD=BTC-USD (repeatable).
        #[arg(long = "symbol")]
        symbols: Vec<String>,
        /// Start the job and return without following it.
        #[arg(long)]
        detach: bool,
        /// The market-data service (default: its configured address).
        #[arg(long)]
        url: Option<String>,
    },
    /// Chaos scenarios over the whole ecosystem in simulated time: list,
    /// show, validate and run them (exit 0 when every expectation holds, 1
    /// when one fails, 2 for an invalid file).
    Scenario(commands::scenario::ScenarioOptions),
    /// Trading states and alerts of the risk service: halt, reduce or
    /// resume a strategy or account (audited), list states and alerts.
    Risk(commands::risk::RiskOptions),
    /// The deployment: start, stop, restart, status, logs and clean through
    /// docker compose; validate readiness (anywhere); backup and restore.
    Infra(commands::infra::InfraOptions),
    /// Backtests one strategy over recorded market data in simulated time,
    /// writing a report folder (report.json, summary.txt, pnl.svg).
    Backtest(commands::backtest::BacktestOptions),
    /// Prints the version.
    Version,
}

#[derive(Subcommand)]
enum ExchangeCommand {
    /// Prints a new random secrets key (64 hex digits) for
    /// TRADESTACK_EXCHANGE__SECRETS_KEY.
    NewKey,
    /// Reads an API secret from stdin and prints it sealed, for
    /// `api_secret_sealed`; the key comes from TRADESTACK_EXCHANGE__SECRETS_KEY.
    SealSecret {
        /// The secrets key (default: the environment).
        #[arg(long, env = "TRADESTACK_EXCHANGE__SECRETS_KEY", hide_env_values = true)]
        key: String,
    },
}

#[derive(Subcommand)]
enum BenchTarget {
    /// Order entry over loopback: REST orders/s and latency, and order to
    /// WebSocket update latency, with the journal on.
    Exchange {
        /// A running exchange (default: start one in this process).
        #[arg(long)]
        url: Option<String>,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// How long to send orders, e.g. 10s.
        #[arg(long, default_value = "10s")]
        duration: humantime::Duration,
        /// The exchange's admin token, to fund the bench accounts (with --url).
        #[arg(long, env = "TRADESTACK_EXCHANGE__ADMIN_TOKEN")]
        admin_token: Option<String>,
    },
    /// Line-protocol ingest from this process: the same generated trades
    /// over TCP and HTTP to a running market-data service, and to InfluxDB
    /// 1.x, in lines/s until they are sent and until they are visible.
    Ingest {
        /// Lines sent to each target.
        #[arg(long, default_value_t = 2_000_000)]
        lines: usize,
        /// Our line protocol over TCP, e.g. tcp://127.0.0.1:9009.
        #[arg(long, value_name = "tcp://HOST:PORT")]
        ilp: Option<String>,
        /// Our HTTP /write, e.g. http://127.0.0.1:8700.
        #[arg(long, value_name = "URL")]
        http: Option<String>,
        /// Where rows sent over TCP are counted (default: --http, else the
        /// configured market-data service).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// InfluxDB 1.x, e.g. http://127.0.0.1:8086 (database `bench`).
        #[arg(long, value_name = "URL")]
        influx: Option<String>,
        /// Lines per HTTP request.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Parallel TCP connections, and HTTP requests in flight.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Longest wait for the lines to become visible.
        #[arg(long, default_value = "300s")]
        timeout: humantime::Duration,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Prints the effective configuration with secrets redacted.
    Show,
}

/// Exit code for an unusable configuration.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Version = cli.command {
        println!("tradestack {}", tradestack_service::VERSION);
        return ExitCode::SUCCESS;
    }
    if let Command::Exchange { command } = &cli.command {
        return exchange_command(command);
    }
    if let Command::Scenario(opts) = cli.command {
        return commands::scenario::run(opts);
    }
    let config = match tradestack_config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Service sections the config crate keeps raw are checked here, so a bad
    // key fails every command the same way.
    let problems = [
        tradestack_exchange::ExchangeSettings::from_table(&config.exchange)
            .err()
            .map(|e| e.to_string()),
        tradestack_marketdata::service::MarketDataSettings::from_table(&config.marketdata)
            .err()
            .map(|e| e.to_string()),
        tradestack_trading::strategies::from_tables(&config.strategies).err(),
        tradestack_risk::RiskConfig::from_table(&config.risk).err(),
        tradestack_trading::service::TradingSettings::from_table(&config.trading).err(),
        tradestack_custody::service::CustodySettings::from_table(&config.custody).err(),
        tradestack_chaos::service::CoordinatorSettings::from_table(&config.coordinator).err(),
        tradestack_audit::service::AuditSettings::from_table(&config.audit).err(),
    ];
    if let Some(e) = problems.into_iter().flatten().next() {
        eprintln!("error: configuration: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up => commands::up::run(config, None).await,
            Command::Serve { service } => commands::up::run(config, Some(service)).await,
            Command::Risk(opts) => commands::risk::run(&config, opts).await,
            Command::Infra(opts) => commands::infra::run(&config, opts).await,
            Command::Scenario(_) => unreachable!("handled before the configuration is read"),
            Command::Status { registry } => commands::status::status(&config, registry).await,
            Command::Health { url: Some(url), .. } => commands::status::health_of(&url).await,
            Command::Health { registry, .. } => commands::status::health(&config, registry).await,
            Command::Config {
                command: ConfigCommand::Show,
            } => {
                print!("{}", config.to_redacted_toml());
                Ok(ExitCode::SUCCESS)
            }
            Command::Bench {
                target:
                    BenchTarget::Exchange {
                        url,
                        connections,
                        duration,
                        admin_token,
                    },
            } => commands::bench::exchange(commands::bench::ExchangeBench {
                url,
                connections: connections.max(1),
                duration: duration.into(),
                admin_token,
            })
            .await
            .map(|()| ExitCode::SUCCESS),
            Command::Bench {
                target:
                    BenchTarget::Ingest {
                        lines,
                        ilp,
                        http,
                        url,
                        influx,
                        batch,
                        connections,
                        timeout,
                    },
            } => {
                let query_url = commands::data::service_url(
                    &config,
                    "marketdata",
                    url.or_else(|| http.clone()),
                );
                commands::bench_ingest::ingest(commands::bench_ingest::IngestBench {
                    lines,
                    ilp,
                    http,
                    query_url,
                    influx,
                    batch,
                    connections,
                    timeout: timeout.into(),
                })
                .await
                .map(|()| ExitCode::SUCCESS)
            }
            Command::Query { sql, url } => {
                commands::data::query(
                    &commands::data::service_url(&config, "marketdata", url),
                    &sql,
                )
                .await
            }
            Command::Import {
                file,
                table,
                timestamp,
                url,
            } => {
                commands::data::import(
                    &commands::data::service_url(&config, "marketdata", url),
                    &file,
                    table,
                    timestamp,
                )
                .await
            }
            Command::Replay {
                files,
                speed,
                no_record,
                symbols,
                detach,
                url,
            } => {
                commands::data::replay(
                    &commands::data::service_url(&config, "marketdata", url),
                    commands::data::ReplayOptions {
                        files,
                        speed,
                        record: !no_record,
                        symbols,
                        detach,
                    },
                )
                .await
            }
            Command::Backtest(opts) => commands::backtest::backtest(&config, opts),
            Command::Version | Command::Exchange { .. } => Ok(ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // One readable line: the error and its causes.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// `tradestack exchange ...`: key and secret utilities (no configuration needed).
fn exchange_command(command: &ExchangeCommand) -> ExitCode {
    match command {
        ExchangeCommand::NewKey => {
            println!("{}", tradestack_exchange::secrets::new_key());
            ExitCode::SUCCESS
        }
        ExchangeCommand::SealSecret { key } => {
            let key = match tradestack_exchange::secrets::parse_key(key) {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let mut secret = String::new();
            if std::io::stdin().read_line(&mut secret).is_err() || secret.trim().is_empty() {
                eprintln!("error: give the secret on stdin");
                return ExitCode::from(EXIT_CONFIG);
            }
            println!(
                "{}",
                tradestack_exchange::secrets::seal(&key, secret.trim_end_matches(['\r', '\n']))
            );
            ExitCode::SUCCESS
        }
    }
}
