//! `tradestack scenario list | show NAME | validate FILE | run NAME|FILE`:
//! chaos scenarios over the whole ecosystem in simulated time, or with
//! `--target URL` in real time through a running coordinator.
//!
//! Exit codes: 0 when every expectation holds, 1 when one does not, 2 for
//! an invalid file (one line naming the field).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use tradestack_chaos::live::RunView;
use tradestack_chaos::run::{Happening, Progress};
use tradestack_chaos::{Scenario, builtin, report};
use tradestack_model::Nanos;

/// `tradestack scenario ...`.
#[derive(Args)]
pub struct ScenarioOptions {
    #[command(subcommand)]
    command: ScenarioCommand,
}

#[derive(Subcommand)]
enum ScenarioCommand {
    /// The built-in scenarios.
    List,
    /// Prints a built-in scenario's YAML.
    Show {
        /// Its name.
        name: String,
    },
    /// Checks a scenario file (exit 2 naming the field when it is invalid).
    Validate {
        /// The YAML file.
        file: PathBuf,
    },
    /// Runs a built-in scenario or a file, then judges its expectations.
    Run {
        /// A built-in name or a YAML file.
        scenario: String,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// max (simulated time, as fast as it goes), realtime, or a multiple such as 60x.
        #[arg(long, default_value = "max")]
        speed: String,
        /// Writes report.json, report.md and report.html here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// A running ecosystem to run against in real time (its coordinator API).
        #[arg(long)]
        target: Option<String>,
    },
}

const EXIT_INVALID: u8 = 2;

/// Runs a `scenario` subcommand.
pub fn run(opts: ScenarioOptions) -> ExitCode {
    match opts.command {
        ScenarioCommand::List => {
            for (name, yaml) in builtin::ALL {
                let about = Scenario::from_yaml(yaml)
                    .map(|s| first_sentence(&s.description))
                    .unwrap_or_default();
                println!("{name:<22} {about}");
            }
            ExitCode::SUCCESS
        }
        ScenarioCommand::Show { name } => match builtin::get(&name) {
            Some(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: no built-in scenario {name:?}; see `tradestack scenario list`");
                ExitCode::from(EXIT_INVALID)
            }
        },
        ScenarioCommand::Validate { file } => match load(&file.to_string_lossy()) {
            Ok(s) => {
                println!(
                    "{}: valid ({}: {} steps, {} expectations)",
                    file.display(),
                    s.name,
                    s.steps.len(),
                    s.expect.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_INVALID)
            }
        },
        ScenarioCommand::Run {
            scenario,
            seed,
            speed,
            report,
            target,
        } => {
            if let Some(url) = target {
                if speed != "max" && speed != "realtime" {
                    eprintln!("error: --speed: with --target the run is in real time");
                    return ExitCode::from(EXIT_INVALID);
                }
                return remote(&url, &scenario, seed, report.as_deref());
            }
            let pace = match parse_speed(&speed) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: --speed: {e}");
                    return ExitCode::from(EXIT_INVALID);
                }
            };
            let s = match load(&scenario) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_INVALID);
                }
            };
            execute(&s, seed.unwrap_or(s.seed), pace, report.as_deref())
        }
    }
}

/// A built-in name, else a file; errors are one line naming the file and field.
fn load(what: &str) -> Result<Scenario, String> {
    if let Some(yaml) = builtin::get(what) {
        return Scenario::from_yaml(yaml).map_err(|e| format!("{what}: {e}"));
    }
    let text = std::fs::read_to_string(what).map_err(|e| {
        format!("{what}: not a built-in scenario, and the file cannot be read ({e})")
    })?;
    Scenario::from_yaml(&text).map_err(|e| format!("{what}: {e}"))
}

fn first_sentence(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match s.find(". ") {
        Some(i) => s[..=i].to_string(),
        None => s,
    }
}

/// Simulated seconds per wall second: `None` = as fast as it goes.
fn parse_speed(s: &str) -> Result<Option<f64>, String> {
    match s {
        "max" => Ok(None),
        "realtime" => Ok(Some(1.0)),
        _ => match s.strip_suffix('x').and_then(|n| n.parse::<f64>().ok()) {
            Some(n) if n > 0.0 && n.is_finite() => Ok(Some(n)),
            _ => Err(format!("{s:?} is not max, realtime or a multiple like 60x")),
        },
    }
}

fn clock(n: Nanos) -> String {
    let s = n.0 / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", s / 3_600, s % 3_600 / 60, s % 60)
}

/// Draws the progress bar (on a terminal only).
fn bar(p: &Progress) {
    let width = 30usize;
    let filled = (p.done.0 as f64 / p.total.0.max(1) as f64 * width as f64) as usize;
    eprint!(
        "\r[{}{}] {} / {}  injections {}  detections {}",
        "#".repeat(filled.min(width)),
        ".".repeat(width - filled.min(width)),
        clock(p.done),
        clock(p.total),
        p.injections,
        p.detections
    );
    let _ = std::io::stderr().flush();
}

/// Prints one line of the live summary (above the bar on a terminal).
fn say(h: &Happening, tty: bool) {
    let line = match h {
        Happening::Injected(i) => match i.cleared_at {
            None => format!("{}  + inject {} ({})", clock(i.at), i.id, i.kind),
            Some(c) => format!("{}  - clear  {}", clock(c), i.id),
        },
        Happening::Detected(d) => format!(
            "{}  ! {:<5} {} {} ({})",
            clock(d.at),
            d.kind,
            d.rule,
            d.subject,
            d.detail
        ),
    };
    if tty {
        eprint!("\r\x1b[2K");
    }
    eprintln!("{line}");
}

/// Prints the report, writes it to `dir`, and gives the exit code.
fn finish(report: &tradestack_chaos::Report, dir: Option<&Path>) -> ExitCode {
    print!("{}", report::markdown(report));
    if let Some(dir) = dir {
        if let Err(e) = report::write(report, dir) {
            eprintln!("error: cannot write the report to {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        println!("Report: {}", dir.display());
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs through the coordinator at `base` in real time, following it until it ends.
fn remote(base: &str, what: &str, seed: Option<u64>, dir: Option<&Path>) -> ExitCode {
    let mut body = serde_json::Map::new();
    if builtin::get(what).is_some() {
        body.insert("name".into(), what.into());
    } else {
        let text = match std::fs::read_to_string(what) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "error: {what}: not a built-in scenario, and the file cannot be read ({e})"
                );
                return ExitCode::from(EXIT_INVALID);
            }
        };
        if let Err(e) = Scenario::from_yaml(&text) {
            eprintln!("error: {what}: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
        body.insert("yaml".into(), text.into());
    }
    if let Some(s) = seed {
        body.insert("seed".into(), s.into());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(follow(base.trim_end_matches('/'), body)) {
        Ok(report) => finish(&report, dir),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn follow(
    base: &str,
    body: serde_json::Map<String, serde_json::Value>,
) -> Result<tradestack_chaos::Report, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{base}/api/v1/scenarios/runs");
    let resp = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("cannot reach the coordinator at {base}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("the coordinator refused the run: {status} {text}"));
    }
    let mut view: RunView = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let tty = std::io::stderr().is_terminal();
    eprintln!(
        "scenario {} (seed {}) on {base} in real time, run {}",
        view.scenario, view.seed, view.id
    );
    let (mut seen_inj, mut seen_det) = (Vec::new(), 0usize);
    loop {
        for i in &view.injections {
            if !seen_inj.contains(i) {
                say(&Happening::Injected(i.clone()), tty);
                seen_inj.push(i.clone());
            }
        }
        for d in view.detections.iter().skip(seen_det) {
            say(&Happening::Detected(d.clone()), tty);
        }
        seen_det = seen_det.max(view.detections.len());
        if tty {
            bar(&Progress {
                done: view.done,
                total: view.duration,
                injections: view.injections.len(),
                detections: view.detections.len(),
            });
        }
        if let Some(report) = view.report.take() {
            if tty {
                eprintln!();
            }
            for e in &report.errors {
                eprintln!("warning: {e}");
            }
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        view = http
            .get(format!("{url}/{}", view.id))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("lost the coordinator at {base}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("the coordinator's answer: {e}"))?;
    }
}

fn execute(s: &Scenario, seed: u64, pace: Option<f64>, dir: Option<&Path>) -> ExitCode {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_bar = Instant::now();
    eprintln!(
        "scenario {} (seed {seed}): {}",
        s.name,
        first_sentence(&s.description)
    );
    let result = tradestack_chaos::run(
        s,
        seed,
        |p| {
            if let Some(speed) = pace {
                // Pace simulated time against the wall clock.
                let due = Duration::from_secs_f64(p.done.0 as f64 / 1e9 / speed);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            if tty && (last_bar.elapsed() >= Duration::from_millis(100) || p.done == p.total) {
                last_bar = Instant::now();
                bar(&p);
            }
        },
        |h| say(h, tty),
    );
    if tty {
        eprintln!();
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let wall = started.elapsed();
    eprintln!(
        "Wall time {:.2} s: {:.0} events/s, {:.0}x real time.",
        wall.as_secs_f64(),
        report.activity.events as f64 / wall.as_secs_f64().max(1e-9),
        report.duration.0 as f64 / 1e9 / wall.as_secs_f64().max(1e-9)
    );
    finish(&report, dir)
}
