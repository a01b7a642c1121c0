//! A run's report as JSON (machine-readable, stable field order), as a
//! Markdown summary, and as one self-contained HTML page with the timeline
//! of injections, detections and P&L drawn inline (no scripts, no
//! external files).

use std::fmt::Write as _;
use std::path::Path;

use tradestack_model::Nanos;

use crate::run::Report;

/// The report as pretty JSON, ending in a newline.
pub fn json(r: &Report) -> String {
    let mut s =
        serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

fn clock(n: Nanos) -> String {
    let s = n.0 / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", s / 3_600, s % 3_600 / 60, s % 60)
}

fn latency(n: Option<Nanos>) -> String {
    n.map_or("—".into(), |n| format!("{:.1} s", n.0 as f64 / 1e9))
}

/// The Markdown summary.
pub fn markdown(r: &Report) -> String {
    let mut m = String::new();
    let verdict = if r.passed { "PASSED" } else { "FAILED" };
    let _ = writeln!(m, "# Scenario {}: {verdict}\n", r.scenario);
    let _ = writeln!(
        m,
        "Seed {}, {} of scenario time; {} exchange events, {} trades, {} strategy fills, {} settlements.\n",
        r.seed,
        clock(r.duration),
        r.activity.events,
        r.activity.trades,
        r.activity.strategy_fills,
        r.activity.settled
    );
    let _ = writeln!(
        m,
        "## Expectations\n\n| | expectation | seen |\n|---|---|---|"
    );
    for o in &r.expectations {
        let mark = if o.passed { "✅" } else { "❌" };
        let _ = writeln!(m, "| {mark} | {} | {} |", o.expectation, o.detail);
    }
    let _ = writeln!(
        m,
        "\n## Injections and detections\n\n| injection | kind | at | cleared | first detection | latency |\n|---|---|---|---|---|---|"
    );
    for (i, a) in r.injections.iter().zip(&r.correlation.injections) {
        let first = a
            .first_detection
            .as_ref()
            .map_or("missed".to_string(), |d| {
                format!("{} {} ({})", d.kind, d.rule, d.subject)
            });
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} |",
            i.id,
            i.kind,
            clock(i.at),
            i.cleared_at.map_or("—".into(), clock),
            first,
            latency(a.latency)
        );
    }
    let c = &r.correlation;
    let _ = writeln!(
        m,
        "\nDetected {}.{:02}% of injections; {} missed; {} false positives; rules exercised: {} ({}.{:02}% of the monitor's rules).",
        c.detected_bps / 100,
        c.detected_bps % 100,
        c.missed.len(),
        c.false_positives.len(),
        if c.rules_exercised.is_empty() {
            "none".to_string()
        } else {
            c.rules_exercised.join(", ")
        },
        c.rules_bps / 100,
        c.rules_bps % 100
    );
    let _ = writeln!(m, "\nWorst P&L: {}.", r.worst_pnl);
    let v = &r.validation;
    let _ = writeln!(
        m,
        "\nIndependent validation: {} positions recomputed from the fills, {} custody balances from the settlements; {}.",
        v.positions_checked,
        v.balances_checked,
        if v.disagreements.is_empty() {
            "all agree".to_string()
        } else {
            format!(
                "{} disagreements: {}",
                v.disagreements.len(),
                v.disagreements.join("; ")
            )
        }
    );
    m
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line of a chart: its name, colour and points (offset, value).
struct Series {
    name: String,
    colour: &'static str,
    points: Vec<(Nanos, f64)>,
}

const COLOURS: &[&str] = &[
    "#264653", "#e76f51", "#2a9d8f", "#8338ec", "#e9c46a", "#3a86ff", "#6a994e", "#bc4749",
];

/// An SVG chart of `series` over the run, with the faults shaded and the
/// detections marked under the axis.
fn chart(r: &Report, series: &[Series], unit: &str) -> String {
    let (w, h, pad) = (960.0_f64, 260.0_f64, 40.0_f64);
    let total = r.duration.0.max(1) as f64;
    let x = |t: Nanos| pad + (t.0 as f64 / total) * (w - 2.0 * pad);
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = (hi - lo).max(f64::EPSILON);
    let y = |v: f64| h - pad - (v - lo) / span * (h - 2.0 * pad);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="timeline">"#
    );
    let _ = write!(
        svg,
        r##"<rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/><line x1="{pad}" y1="{z}" x2="{e}" y2="{z}" stroke="#999" stroke-dasharray="4 3"/>"##,
        z = y(0.0),
        e = w - pad
    );
    for inj in &r.injections {
        let x0 = x(inj.at);
        let x1 = inj.cleared_at.map_or(w - pad, x);
        let _ = write!(
            svg,
            r##"<rect x="{x0:.1}" y="{pad}" width="{:.1}" height="{:.1}" fill="#f4a261" opacity="0.25"><title>{} ({})</title></rect><text x="{x0:.1}" y="{:.1}" font-size="11" fill="#b5561b">{}</text>"##,
            (x1 - x0).max(1.0),
            h - 2.0 * pad,
            escape(&inj.id),
            escape(&inj.kind),
            pad - 6.0,
            escape(&inj.id)
        );
    }
    for s in series {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"><title>{}</title></polyline>"##,
            s.colour,
            points.join(" "),
            escape(&s.name)
        );
    }
    for d in &r.detections {
        let colour = if d.kind == "state" {
            "#e63946"
        } else {
            "#2a9d8f"
        };
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"><title>{} {} {} ({})</title></circle>"##,
            x(d.at),
            h - pad + 12.0,
            clock(d.at),
            escape(&d.kind),
            escape(&d.rule),
            escape(&d.subject)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{pad}" y="{:.1}" font-size="11">00:00:00</text><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text><text x="4" y="{:.1}" font-size="11">{hi:.2}{unit}</text><text x="4" y="{:.1}" font-size="11">{lo:.2}{unit}</text></svg>"##,
        h - 4.0,
        w - pad,
        h - 4.0,
        clock(r.duration),
        pad - 2.0,
        h - pad
    );
    let legend: Vec<String> = series
        .iter()
        .map(|s| {
            format!(
                r#"<span style="color:{}">&#9632; {}</span>"#,
                s.colour,
                escape(&s.name)
            )
        })
        .collect();
    format!("{svg}<p>{}</p>", legend.join(" &nbsp; "))
}

/// The self-contained HTML page.
pub fn html(r: &Report) -> String {
    let pnl = chart(
        r,
        &[Series {
            name: "P&L".into(),
            colour: COLOURS[0],
            points: r
                .pnl
                .iter()
                .map(|p| (p.at, p.pnl.raw() as f64 / 1e8))
                .collect(),
        }],
        "",
    );
    // Prices as a change from their first sample, so BTC and a stablecoin share an axis.
    let mut symbols: Vec<&String> = r.prices.iter().flat_map(|p| p.prices.keys()).collect();
    symbols.sort();
    symbols.dedup();
    let series: Vec<Series> = symbols
        .iter()
        .enumerate()
        .map(|(n, sym)| {
            let base = r
                .prices
                .iter()
                .find_map(|p| p.prices.get(*sym))
                .map_or(1.0, |p| p.raw() as f64);
            Series {
                name: (*sym).clone(),
                colour: COLOURS[(n + 1) % COLOURS.len()],
                points: r
                    .prices
                    .iter()
                    .filter_map(|p| {
                        let v = p.prices.get(*sym)?.raw() as f64;
                        Some((p.at, (v / base.max(1.0) - 1.0) * 100.0))
                    })
                    .collect(),
            }
        })
        .collect();
    let prices = chart(r, &series, "%");
    let body = markdown_to_html(&markdown(r));
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Scenario {name}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style>
</head><body>
<h2>Timeline</h2>
<p>Faults are shaded from injection to clearing; under each chart, alerts are green dots and state changes red.</p>
<h3>P&amp;L</h3>
{pnl}
<h3>Reference prices (change from the start)</h3>
{prices}
{body}
</body></html>
"#,
        name = escape(&r.scenario)
    )
}

/// Just enough Markdown for the summary: headings, tables, paragraphs.
fn markdown_to_html(md: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    for line in md.lines() {
        if let Some(t) = line.strip_prefix("# ") {
            let _ = writeln!(out, "<h1>{}</h1>", escape(t));
        } else if let Some(t) = line.strip_prefix("## ") {
            let _ = writeln!(out, "<h2>{}</h2>", escape(t));
        } else if line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            if !in_table {
                out.push_str("<table>\n");
                in_table = true;
            }
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| format!("<td>{}</td>", escape(c.trim())))
                .collect();
            let _ = writeln!(out, "<tr>{}</tr>", cells.join(""));
        } else {
            if in_table {
                out.push_str("</table>\n");
                in_table = false;
            }
            if !line.trim().is_empty() {
                let _ = writeln!(out, "<p>{}</p>", escape(line));
            }
        }
    }
    if in_table {
        out.push_str("</table>\n");
    }
    out
}

/// Writes `report.json`, `report.md` and `report.html` into `dir`.
pub fn write(r: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), json(r))?;
    std::fs::write(dir.join("report.md"), markdown(r))?;
    std::fs::write(dir.join("report.html"), html(r))
}
