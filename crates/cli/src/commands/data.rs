//! `query` (SQL against the market-data service, printed as a table),
//! `import` (a CSV file into a table, with a progress bar) and `replay`
//! (recorded files onto the market-data feed, with a progress bar).

use std::io::{BufRead, BufReader, Read};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tradestack_config::Config;

/// A service's URL: `--url`, else its configured address.
pub fn service_url(config: &Config, service: &str, url: Option<String>) -> String {
    url.unwrap_or_else(|| {
        let cfg = config.service(service);
        let (host, port) = tradestack_service::advertised(cfg.advertise.as_deref(), cfg.listen);
        format!("http://{host}:{port}")
    })
    .trim_end_matches('/')
    .to_string()
}

/// Runs one SQL statement and prints the answer as an aligned table.
pub async fn query(base: &str, sql: &str) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/exec"))
        .query(&[("query", sql)])
        .send()
        .await
        .with_context(|| format!("cannot reach the market-data service at {base}"))?;
    let status = r.status();
    let body: Value = r.json().await.context("answer is not JSON")?;
    if !status.is_success() {
        let msg = body["error"]
            .as_str()
            .or(body["message"].as_str())
            .unwrap_or("query failed");
        match body["position"].as_u64() {
            Some(p) => bail!("{msg} (at position {p})"),
            None => bail!("{msg}"),
        }
    }
    let columns: Vec<String> = body["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = body["dataset"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_array()
                        .map(|cells| cells.iter().map(cell).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    print!("{}", table(&columns, &rows));
    println!(
        "({} row{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell, numbers right-aligned.
fn table(columns: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let numeric = |s: &str| !s.is_empty() && s.parse::<f64>().is_ok();
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| {
                if numeric(c) {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut out, columns);
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&rule.join("  "));
    out.push('\n');
    for r in rows {
        line(&mut out, r);
    }
    out
}

/// Options of `tradestack replay`.
pub struct ReplayOptions {
    /// The files.
    pub files: Vec<std::path::PathBuf>,
    /// `max`, `realtime` or `Nx`.
    pub speed: String,
    /// Store what is replayed.
    pub record: bool,
    /// `VENUE_SYMBOL=INSTRUMENT` mappings.
    pub symbols: Vec<String>,
    /// Return once the job started.
    pub detach: bool,
}

/// Starts a replay job on the service and follows it to the end.
pub async fn replay(base: &str, opts: ReplayOptions) -> anyhow::Result<ExitCode> {
    opts.speed
        .parse::<tradestack_marketdata::replay::Speed>()
        .map_err(|e| anyhow::anyhow!("--speed: {e}"))?;
    let mut symbols = serde_json::Map::new();
    for s in &opts.symbols {
        let Some((venue, id)) = s.split_once('=') else {
            bail!("--symbol {s:?}: expected VENUE_SYMBOL=INSTRUMENT, e.g. XBTUSD=BTC-USD");
        };
        symbols.insert(venue.to_string(), Value::from(id));
    }
    // The service reads the files itself: send absolute paths when they exist here.
    let files: Vec<String> = opts
        .files
        .iter()
        .map(|f| {
            std::fs::canonicalize(f)
                .unwrap_or_else(|_| f.clone())
                .display()
                .to_string()
        })
        .collect();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/v1/replays"))
        .json(&serde_json::json!({
            "files": files,
            "speed": opts.speed,
            "record": opts.record,
            "symbols": symbols,
        }))
        .send()
        .await
        .with_context(|| format!("cannot reach the market-data service at {base}"))?;
    let status = r.status();
    let body: Value = r.json().await.context("answer is not JSON")?;
    if !status.is_success() {
        let msg = body["message"].as_str().unwrap_or("replay refused");
        match body["field"].as_str() {
            Some(f) => bail!("{f}: {msg}"),
            None => bail!("{msg}"),
        }
    }
    let id = body["id"].as_u64().context("answer has no job id")?;
    if opts.detach {
        println!("replay {id} started; follow it at {base}/api/v1/replays/{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:40}] {pos}/{len} events {per_sec} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let last = loop {
        let s: Value = client
            .get(format!("{base}/api/v1/replays/{id}"))
            .send()
            .await
            .with_context(|| format!("lost the market-data service at {base}"))?
            .json()
            .await
            .context("answer is not JSON")?;
        bar.set_length(s["total"].as_u64().unwrap_or(0));
        bar.set_position(s["published"].as_u64().unwrap_or(0));
        let state = s["state"].as_str().unwrap_or("").to_string();
        bar.set_message(state.clone());
        if !matches!(state.as_str(), "loading" | "running") {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish_and_clear();
    for e in last["first_row_errors"].as_array().into_iter().flatten() {
        eprintln!("skipped: {}", e.as_str().unwrap_or(""));
    }
    let skipped = last["row_errors"].as_u64().unwrap_or(0);
    let published = last["published"].as_u64().unwrap_or(0);
    match last["state"].as_str() {
        Some("done") => {
            println!(
                "replayed {published} events from {} file(s); {skipped} row(s) skipped",
                files.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some("cancelled") => {
            eprintln!("replay {id} was cancelled after {published} events");
            Ok(ExitCode::from(1))
        }
        _ => bail!(
            "replay failed: {}",
            last["error"].as_str().unwrap_or("unknown error")
        ),
    }
}

/// How much of the file each request carries.
const CHUNK: usize = 4 << 20;

/// Imports a CSV file (header row first) in chunks, showing progress.
pub async fn import(
    base: &str,
    path: &std::path::Path,
    table: Option<String>,
    timestamp: Option<String>,
) -> anyhow::Result<ExitCode> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let table = match table {
        Some(t) => t,
        None => path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| {
                s.chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect()
            })
            .context("give the table with --table")?,
    };
    let mut reader = BufReader::new(file);
    let mut header = String::new();
    reader.read_line(&mut header).context("read the header")?;
    if header.trim().is_empty() {
        bail!("{} is empty: a header row is required", path.display());
    }
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(header.len() as u64);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let (mut imported, mut rejected) = (0u64, 0u64);
    let mut first_errors: Vec<String> = Vec::new();
    let mut lines_before = 1u64;
    loop {
        let mut chunk = header.clone().into_bytes();
        let start = chunk.len();
        (&mut reader)
            .take(CHUNK as u64)
            .read_to_end(&mut chunk)
            .context("read the file")?;
        if chunk.len() == start {
            break;
        }
        // End on a whole line.
        if chunk.last() != Some(&b'\n') {
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest)?;
            chunk.extend_from_slice(&rest);
        }
        let sent = (chunk.len() - start) as u64;
        let r = client
            .post(format!("{base}/imp"))
            .query(&[("name", table.as_str())])
            .query(&timestamp.as_ref().map(|t| [("timestamp", t.as_str())]))
            .header("content-type", "text/csv")
            .body(chunk.clone())
            .send()
            .await
            .with_context(|| format!("cannot reach the market-data service at {base}"))?;
        let status = r.status();
        let body: Value = r.json().await.context("answer is not JSON")?;
        if !status.is_success() {
            bar.abandon();
            bail!(
                "{}: {}",
                body["field"].as_str().unwrap_or("import"),
                body["message"].as_str().unwrap_or("refused")
            );
        }
        imported += body["rows_imported"].as_u64().unwrap_or(0);
        rejected += body["rows_rejected"].as_u64().unwrap_or(0);
        for e in body["errors"].as_array().into_iter().flatten() {
            if first_errors.len() < 5 {
                // Line numbers are per chunk: shift them to the file's.
                let line = e["line"].as_u64().unwrap_or(0);
                first_errors.push(format!(
                    "line {}: {}",
                    line + lines_before - 1,
                    e["message"].as_str().unwrap_or("")
                ));
            }
        }
        lines_before += chunk[start..].iter().filter(|&&b| b == b'\n').count() as u64;
        bar.inc(sent);
    }
    bar.finish_and_clear();
    println!("imported {imported} rows into {table}; {rejected} rejected");
    for e in &first_errors {
        println!("  {e}");
    }
    Ok(if imported == 0 && rejected > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_numbers_right() {
        let t = table(
            &["symbol".into(), "price".into()],
            &[
                vec!["BTC-USDT".into(), "42000.5".into()],
                vec!["X".into(), "1".into()],
            ],
        );
        assert_eq!(
            t,
            "symbol    price\n--------  -------\nBTC-USDT  42000.5\nX               1\n"
        );
    }
}
