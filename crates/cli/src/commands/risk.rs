//! `risk`: manual trading-state changes and a look at states and alerts,
//! through the risk service's API.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tradestack_config::Config;

/// `tradestack risk ...`.
#[derive(Args)]
pub struct RiskOptions {
    /// The risk service (default: its configured address).
    #[arg(long, global = true)]
    url: Option<String>,
    #[command(subcommand)]
    command: RiskCommand,
}

#[derive(Subcommand)]
enum RiskCommand {
    /// HALTED: the strategy's (or the whole account's) open orders are
    /// cancelled and new ones refused.
    Halt(Target),
    /// REDUCING: only orders that reduce the position are accepted.
    Reduce(Target),
    /// Back to ACTIVE.
    Resume(Target),
    /// Prints every restricted strategy and account, and the audit trail.
    States,
    /// Prints the alerts (all, or only the active ones).
    Alerts {
        /// Only alerts that have not resolved.
        #[arg(long)]
        active: bool,
    },
}

#[derive(Args)]
struct Target {
    /// The account.
    #[arg(long)]
    account: String,
    /// One strategy of the account (default: the whole account).
    #[arg(long)]
    strategy: Option<String>,
    /// Why, for the audit trail.
    #[arg(long, default_value = "manual")]
    reason: String,
    /// Who, for the audit trail (default: $USER).
    #[arg(long, env = "USER", default_value = "operator")]
    user: String,
}

/// Runs a `risk` subcommand.
pub async fn run(config: &Config, opts: RiskOptions) -> anyhow::Result<ExitCode> {
    let base = super::data::service_url(config, "risk", opts.url);
    let client = reqwest::Client::new();
    let (state, target) = match opts.command {
        RiskCommand::Halt(t) => ("HALTED", t),
        RiskCommand::Reduce(t) => ("REDUCING", t),
        RiskCommand::Resume(t) => ("ACTIVE", t),
        RiskCommand::States => {
            let v = get(&client, &format!("{base}/api/v1/risk/states")).await?;
            let restricted = v["restricted"].as_array().cloned().unwrap_or_default();
            if restricted.is_empty() {
                println!("every strategy and account is ACTIVE");
            }
            for r in restricted {
                println!("{:<40} {}", subject(&r[0]), r[1].as_str().unwrap_or("?"));
            }
            return Ok(ExitCode::SUCCESS);
        }
        RiskCommand::Alerts { active } => {
            let url = format!("{base}/api/v1/risk/alerts?active={active}");
            let v = get(&client, &url).await?;
            let alerts = v.as_array().cloned().unwrap_or_default();
            for a in &alerts {
                println!(
                    "{:<9} {:<20} {:<30} {} / {}{}",
                    a["severity"].as_str().unwrap_or("?"),
                    a["rule"].as_str().unwrap_or("?"),
                    a["subject"].as_str().unwrap_or("?"),
                    a["value"].as_str().unwrap_or("?"),
                    a["threshold"].as_str().unwrap_or("?"),
                    if a["resolved"].as_bool() == Some(true) {
                        " (resolved)"
                    } else {
                        ""
                    }
                );
            }
            println!(
                "({} alert{})",
                alerts.len(),
                if alerts.len() == 1 { "" } else { "s" }
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    let body = json!({
        "account": target.account,
        "strategy": target.strategy,
        "state": state,
        "user": target.user,
        "reason": target.reason,
    });
    let r = client
        .post(format!("{base}/api/v1/risk/states"))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the risk service at {base}"))?;
    let v = answer(r).await?;
    if v["unchanged"].as_bool() == Some(true) {
        println!("{} was already {state}", subject(&v["subject"]));
    } else {
        println!(
            "{}: {} -> {}",
            subject(&v["subject"]),
            v["from"].as_str().unwrap_or("?"),
            v["to"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let r = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach the risk service at {url}"))?;
    answer(r).await
}

/// The JSON of a successful answer, else the service's message as the error.
async fn answer(r: reqwest::Response) -> anyhow::Result<Value> {
    let status = r.status();
    let v: Value = r
        .json()
        .await
        .context("the risk service's answer is not JSON")?;
    if !status.is_success() {
        bail!("{}", v["message"].as_str().unwrap_or("refused"));
    }
    Ok(v)
}

fn subject(v: &Value) -> String {
    match v["strategy"].as_str() {
        Some(s) => format!("{}/{s}", v["account"].as_str().unwrap_or("?")),
        None => v["account"].as_str().unwrap_or("?").to_string(),
    }
}
