//! `up` (every service in one process) and `serve <service>` (one service).

use crate::services::{ALL, RegistryService};
use anyhow::Context;
use std::process::ExitCode;
use std::sync::Arc;
use tradestack_config::Config;
use tradestack_registry::{Registry, RegistryClient};
use tradestack_service::{RegistryLink, RunningService, Runtime};

/// Starts the chosen services (all when `only` is `None`) and runs until
/// Ctrl-C or SIGTERM, then shuts down cleanly and exits 0.
pub async fn run(config: Config, only: Option<String>) -> anyhow::Result<ExitCode> {
    if let Some(name) = &only
        && !ALL.contains(&name.as_str())
    {
        eprintln!(
            "error: unknown service {name:?}; available: {}",
            ALL.join(", ")
        );
        return Ok(ExitCode::from(2));
    }
    let label = only.clone().unwrap_or_else(|| "all".into());
    let mut guard =
        tradestack_telemetry::logging::init(&tradestack_telemetry::logging::LogSettings {
            service: format!("tradestack-{label}"),
            json: config.log.format == tradestack_config::LogFormat::Json,
            level: config.log.level.clone(),
            otlp_endpoint: config.otlp_endpoint(),
        })
        .context("telemetry")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;

    let mut rt = Runtime::build(config, &label).await?;
    let wanted = |name: &str| match &only {
        Some(o) => o == name,
        None => rt.config.service(name).enabled,
    };

    let registry = Registry::new(
        rt.cache.clone(),
        rt.clock.clone(),
        rt.config.registry.ttl.as_std(),
    );
    let mut running: Vec<RunningService> = Vec::new();
    // Services in this process use a local registry directly, else the configured one.
    let link = if wanted("registry") {
        RegistryLink::Local(registry.clone())
    } else {
        RegistryLink::Remote(RegistryClient::new(rt.config.registry.url.clone()))
    };
    if wanted("registry") {
        let svc = Arc::new(RegistryService {
            registry: registry.clone(),
        });
        running.push(serve(&rt, svc, &link).await?);
    }
    let md_settings =
        tradestack_marketdata::service::MarketDataSettings::from_table(&rt.config.marketdata)
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let mut exchange_handle = None;
    let mut exchange_bars = None;
    if wanted("exchange") {
        let settings = tradestack_exchange::ExchangeSettings::from_table(&rt.config.exchange)
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        let svc = tradestack_exchange::ExchangeService::start(
            settings,
            &rt.config.data_dir,
            rt.clock.clone(),
            &rt.metrics,
            rt.store.clone(),
            rt.bus.clone(),
            rt.config.seed,
        )
        .context("exchange journal")?;
        exchange_handle = Some(svc.handle().clone());
        exchange_bars = Some(svc.minute_bars().clone());
        running.push(serve(&rt, Arc::new(svc), &link).await?);
    }
    let mut ilp = None;
    if wanted("marketdata") {
        let svc = tradestack_marketdata::service::MarketDataService::start(
            md_settings,
            tradestack_marketdata::service::Context {
                data_dir: rt.config.data_dir.clone(),
                clock: rt.clock.clone(),
                metrics: rt.metrics.clone(),
                bus: rt.bus.clone(),
                exchange: exchange_handle.clone(),
                exchange_bars: exchange_bars.clone(),
                seed: rt.config.seed,
            },
        )
        .await
        .context("market data")?;
        ilp = svc.ilp_addr();
        running.push(serve(&rt, Arc::new(svc), &link).await?);
    }
    // The audit starts before the strategies so it sums every fill they make.
    if wanted("audit") {
        let settings = tradestack_audit::service::AuditSettings::from_table(&rt.config.audit)
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        let svc = tradestack_audit::service::AuditService::start(
            settings,
            tradestack_audit::service::Context {
                bus: rt.bus.clone(),
                clock: rt.clock.clone(),
                metrics: rt.metrics.clone(),
                registry: link.clone(),
                shutdown: rt.shutdown_signal(),
            },
        )
        .await
        .context("audit")?;
        running.push(serve(&rt, Arc::new(svc), &link).await?);
    }
    let strategies = tradestack_trading::strategies::from_tables(&rt.config.strategies)
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let accounts = tradestack_risk::service::strategy_accounts(&strategies);
    let trading = tradestack_trading::service::TradingSettings::from_table(&rt.config.trading)
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let risk_config = tradestack_risk::RiskConfig::from_table(&rt.config.risk)
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    // Risk starts before the strategies so it hears their first orders.
    if wanted("risk") {
        let instruments = tradestack_exchange::ExchangeSettings::from_table(&rt.config.exchange)
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?
            .instruments;
        let svc = tradestack_risk::service::RiskService::start(
            risk_config.clone(),
            &instruments,
            &accounts,
            tradestack_risk::service::Context {
                bus: rt.bus.clone(),
                store: rt.store.clone(),
                clock: rt.clock.clone(),
                metrics: rt.metrics.clone(),
                feed_venue: trading.feed_venue.clone(),
                shutdown: rt.shutdown_signal(),
            },
        )
        .await
        .context("risk")?;
        running.push(serve(&rt, Arc::new(svc), &link).await?);
    }
    if wanted("strategy") {
        let venue = tradestack_trading::service::venue_for(&trading, exchange_handle.clone())
            .context("strategy")?;
        let instruments = venue.instruments().await.context("strategy venue")?;
        let mut gate = tradestack_risk::RiskMonitor::new(
            risk_config.clone(),
            instruments.iter(),
            rt.clock.now(),
        );
        for (s, a) in &accounts {
            gate.register(s.clone(), a.clone());
        }
        let svc = tradestack_trading::service::StrategyService::start(
            &trading,
            &strategies,
            gate,
            venue,
            tradestack_trading::service::Context {
                bus: rt.bus.clone(),
                clock: rt.clock.clone(),
                metrics: rt.metrics.clone(),
                shutdown: rt.shutdown_signal(),
            },
        )
        .await
        .context("strategy")?;
        tradestack_risk::service::follow_states(&rt.bus, &*rt.store, svc.driver().clone())
            .await
            .context("strategy")?;
        running.push(serve(&rt, Arc::new(svc), &link).await?);
    }
    // The custodian opens the accounts' balances after the strategies funded them.
    if wanted("custodian") {
        let mut settings =
            tradestack_custody::service::CustodySettings::from_table(&rt.config.custody)
                .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        if settings.accounts.is_empty() {
            let unique: std::collections::BTreeSet<_> =
                accounts.iter().map(|(_, a)| a.clone()).collect();
            settings.accounts = unique.into_iter().collect();
        }
        let venue = tradestack_trading::service::venue_for(&trading, exchange_handle.clone())
            .context("custodian")?;
        let svc = tradestack_custody::service::CustodianService::start(
            settings,
            tradestack_custody::service::Context {
                store: rt.store.clone(),
                bus: rt.bus.clone(),
                clock: rt.clock.clone(),
                venue,
                shutdown: rt.shutdown_signal(),
            },
        )
        .await
        .context("custodian")?;
        running.push(serve(&rt, Arc::new(svc), &link).await?);
    }
    if wanted("coordinator") {
        let mut settings =
            tradestack_chaos::service::CoordinatorSettings::from_table(&rt.config.coordinator)
                .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        if settings.admin_token.is_none() {
            settings.admin_token =
                tradestack_exchange::ExchangeSettings::from_table(&rt.config.exchange)
                    .map_err(|e| anyhow::anyhow!("configuration: {e}"))?
                    .admin_token;
        }
        let svc = tradestack_chaos::service::CoordinatorService::new(
            settings,
            tradestack_chaos::service::Context {
                bus: rt.bus.clone(),
                clock: rt.clock.clone(),
                registry: link.clone(),
            },
        );
        running.push(serve(&rt, Arc::new(svc), &link).await?);
    }
    say(&format!(
        "tradestack {} is up (bus={}, state={}, cache={})",
        tradestack_service::VERSION,
        rt.bus.engine_name(),
        rt.store.engine(),
        rt.cache.engine()
    ));
    for s in &running {
        say(&format!("  {:<12} http://{}", s.name, s.addr));
    }
    if let Some(addr) = ilp {
        say(&format!("  {:<12} tcp://{addr} (line protocol)", "ilp"));
    }
    say("Press Ctrl-C to stop.");

    wait_for_signal().await;
    say("shutting down...");
    rt.begin_shutdown();
    for s in running {
        let _ = s.task.await;
    }
    rt.finish_shutdown().await;
    guard.shutdown();
    say("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// Serves a started service on its configured address and registers it.
async fn serve(
    rt: &Runtime,
    svc: Arc<dyn tradestack_service::Service>,
    link: &RegistryLink,
) -> Result<RunningService, tradestack_service::ServiceError> {
    let cfg = rt.config.service(svc.name());
    tradestack_service::start(rt, svc, cfg.listen, cfg.advertise.clone(), link.clone()).await
}

/// Prints a line; a closed stdout (e.g. piped into `head`) is not an error.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
