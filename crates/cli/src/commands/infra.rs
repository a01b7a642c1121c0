//! `tradestack infra ...`: the deployment's lifecycle through docker compose
//! (where a Docker engine exists), its readiness (anywhere), and its backups.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::{Args, Subcommand};
use tradestack_config::Config;
use tradestack_registry::RegistryClient;

use crate::services::ALL;

/// `tradestack infra ...`.
#[derive(Args)]
pub struct InfraOptions {
    #[command(subcommand)]
    command: InfraCommand,
    /// The directory holding `docker-compose.yml` (and its overrides).
    #[arg(long, global = true, default_value = ".")]
    dir: PathBuf,
    /// Also apply `docker-compose.<env>.yml` (`dev` or `prod`).
    #[arg(long, global = true)]
    env: Option<String>,
    /// The compose profile (`core`, `storage`, `streaming`, `monitoring`, `tracing`, `all`).
    #[arg(long, global = true, default_value = "all")]
    profile: String,
}

#[derive(Subcommand)]
enum InfraCommand {
    /// Builds and starts the stack in the background (`docker compose up -d`).
    Start,
    /// Stops the containers, keeping their data.
    Stop,
    /// Restarts every container, or one.
    Restart {
        /// A compose service.
        service: Option<String>,
    },
    /// The containers and their health (`docker compose ps`).
    Status,
    /// Every service's readiness through the registry, as a table; exit 1 on a failure.
    Validate {
        /// The registry of any running deployment (default: `registry.url`).
        #[arg(long)]
        target: Option<String>,
    },
    /// The containers' logs, or one service's.
    Logs {
        /// A compose service.
        service: Option<String>,
        /// Keep following.
        #[arg(long, short)]
        follow: bool,
    },
    /// Removes the containers, networks and volumes: every byte of data.
    Clean,
    /// Writes a timestamped archive of the state store, the time series and the journal.
    Backup {
        /// Where the archive goes.
        #[arg(long, default_value = "backups")]
        out: PathBuf,
    },
    /// Restores an archive into the configured (empty) data directory and state store.
    Restore {
        /// The archive.
        archive: PathBuf,
        /// Overwrite a data directory that is not empty.
        #[arg(long)]
        force: bool,
    },
}

/// Runs an `infra` subcommand.
pub async fn run(config: &Config, opts: InfraOptions) -> anyhow::Result<ExitCode> {
    let compose_args: Vec<String> = match &opts.command {
        InfraCommand::Start => vec!["up".into(), "-d".into(), "--build".into()],
        InfraCommand::Stop => vec!["stop".into()],
        InfraCommand::Restart { service } => {
            let mut a = vec!["restart".to_string()];
            a.extend(service.clone());
            a
        }
        InfraCommand::Status => vec!["ps".into()],
        InfraCommand::Logs { service, follow } => {
            let mut a = vec!["logs".to_string()];
            if *follow {
                a.push("--follow".into());
            }
            a.extend(service.clone());
            a
        }
        InfraCommand::Clean => vec!["down".into(), "--volumes".into(), "--remove-orphans".into()],
        InfraCommand::Validate { target } => return validate(config, target.clone()).await,
        InfraCommand::Backup { out } => {
            let path = super::backup::backup(config, out).await?;
            println!("{}", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        InfraCommand::Restore { archive, force } => {
            let m = super::backup::restore(config, archive, *force).await?;
            println!(
                "restored {} files from {} (taken {}, {} state store) into {}",
                m.files.len(),
                archive.display(),
                m.created_at,
                m.state_engine,
                config.data_dir.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    compose(&opts, &compose_args)
}

/// The compose command line: `docker compose` (plugin) or `docker-compose`.
fn compose_program() -> Option<Vec<String>> {
    let works = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("docker", &["compose", "version"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else if works("docker-compose", &["version"]) {
        Some(vec!["docker-compose".into()])
    } else {
        None
    }
}

fn compose(opts: &InfraOptions, args: &[String]) -> anyhow::Result<ExitCode> {
    let Some(program) = compose_program() else {
        eprintln!(
            "error: docker compose is not installed here; `tradestack infra validate --target URL` checks a deployment without it"
        );
        return Ok(ExitCode::from(2));
    };
    let engine = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !engine {
        eprintln!(
            "error: no Docker engine answers here; `tradestack infra validate --target URL` checks a deployment without it"
        );
        return Ok(ExitCode::from(2));
    }
    let mut cmd = Command::new(&program[0]);
    cmd.args(&program[1..]).current_dir(&opts.dir);
    cmd.args(["-f", "docker-compose.yml"]);
    if let Some(env) = &opts.env {
        cmd.args(["-f", &format!("docker-compose.{env}.yml")]);
    }
    cmd.args(["--profile", &opts.profile]).args(args);
    let status = cmd.status()?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Checks every service's readiness through the registry and prints a table.
async fn validate(config: &Config, target: Option<String>) -> anyhow::Result<ExitCode> {
    let registry = target.unwrap_or_else(|| config.registry.url.clone());
    let client = RegistryClient::new(registry.clone());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let entries = match client.services().await {
        Ok(e) => e,
        Err(e) => {
            println!("❌ registry    {registry}: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("{:<3}{:<13}{:<28}detail", "", "service", "instance");
    let mut failures = 0;
    for name in ALL {
        let instances: Vec<_> = entries.iter().filter(|e| e.name == *name).collect();
        if instances.is_empty() {
            failures += 1;
            println!("❌ {name:<13}{:<28}not registered", "-");
            continue;
        }
        for e in instances {
            let base = e.base_url();
            let verdict = super::status::ready_at(&http, &base).await;
            let addr = format!("{}:{}", e.address, e.port);
            match verdict {
                Ok(()) => println!("✅ {name:<13}{addr:<28}ready"),
                Err(d) => {
                    failures += 1;
                    println!("❌ {name:<13}{addr:<28}{d}");
                }
            }
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
