//! `status` and `health`: what the registry knows, and whether it is enough.

use std::process::ExitCode;
use std::time::Duration;
use tradestack_config::Config;
use tradestack_registry::{CheckStatus, RegistryClient, ServiceEntry};

fn client(config: &Config, url: Option<String>) -> RegistryClient {
    RegistryClient::new(url.unwrap_or_else(|| config.registry.url.clone()))
}

fn uptime(entry: &ServiceEntry, now_ns: i64) -> String {
    let secs = ((now_ns - entry.registered_at.as_i64()) / 1_000_000_000).max(0) as u64;
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

async fn ready(http: &reqwest::Client, e: &ServiceEntry) -> Result<(), String> {
    ready_at(http, &e.base_url()).await
}

/// Whether the service at `base` answers its readiness probe with 2xx.
pub(crate) async fn ready_at(http: &reqwest::Client, base: &str) -> Result<(), String> {
    match http
        .get(format!("{}/readyz", base.trim_end_matches('/')))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let code = r.status().as_u16();
            Err(format!("{code} {}", r.text().await.unwrap_or_default()))
        }
        Err(e) => Err(format!("unreachable: {e}")),
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Prints a table of registered services.
pub async fn status(config: &Config, url: Option<String>) -> anyhow::Result<ExitCode> {
    let c = client(config, url);
    let entries = c.services().await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    println!(
        "{:<28} {:<10} {:<22} {:<10} {:<14} VERSION",
        "ID", "SERVICE", "ADDRESS", "HEALTH", "UPTIME"
    );
    let now = now_ns();
    for e in &entries {
        let health = match (e.status, ready(&http, e).await) {
            (CheckStatus::Passing, Ok(())) => "healthy",
            (CheckStatus::Passing, Err(_)) => "not-ready",
            (CheckStatus::Warning, _) => "warning",
            (CheckStatus::Critical, _) => "critical",
        };
        println!(
            "{:<28} {:<10} {:<22} {:<10} {:<14} {}",
            e.id,
            e.name,
            format!("{}:{}", e.address, e.port),
            health,
            uptime(e, now),
            e.version()
        );
    }
    if entries.is_empty() {
        println!("(no services registered at {})", c.base());
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks one service's readiness at `base` (a container health check); exits 1 unless ready.
pub async fn health_of(base: &str) -> anyhow::Result<ExitCode> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    Ok(match ready_at(&http, base).await {
        Ok(()) => {
            println!("ok      {base}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAILED  {base}: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Checks every required service has a passing, ready instance; exits 1 otherwise.
pub async fn health(config: &Config, url: Option<String>) -> anyhow::Result<ExitCode> {
    let c = client(config, url);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let mut failures = 0;
    for name in &config.registry.required {
        let verdict = match c.health(name, false).await {
            Err(e) => Err(e.to_string()),
            Ok(entries) if entries.is_empty() => Err("no passing instance registered".to_string()),
            Ok(entries) => {
                let mut last = Err(String::new());
                for e in &entries {
                    last = ready(&http, e).await;
                    if last.is_ok() {
                        break;
                    }
                }
                last
            }
        };
        match verdict {
            Ok(()) => println!("ok      {name}"),
            Err(e) => {
                failures += 1;
                println!("FAILED  {name}: {e}");
            }
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
