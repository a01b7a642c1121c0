//! Backtest reports as text: a human summary and an SVG plot of the P&L.
//!
//! SVG is written by hand (a polyline in a fixed frame) so a report needs no
//! plotting library and is byte-for-byte reproducible.

use std::fmt::Write as _;

use crate::backtest::BacktestReport;

fn utc(ns: i64) -> String {
    tradestack_model::UnixNanos(ns).to_rfc3339_secs()
}

/// The human summary.
pub fn summary(r: &BacktestReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "backtest {} ({})", r.strategy, r.kind);
    let _ = writeln!(
        s,
        "  window      {} to {} ({} market events)",
        utc(r.from.0),
        utc(r.to.0),
        r.events
    );
    let _ = writeln!(
        s,
        "  P&L         {} {} (realized {}, unrealized {}, fees {})",
        r.pnl, r.pnl_asset, r.realized, r.unrealized, r.fees
    );
    let _ = writeln!(
        s,
        "  drawdown    {} {} ({}.{:02}% of funding)",
        r.max_drawdown,
        r.pnl_asset,
        r.max_drawdown_bps / 100,
        r.max_drawdown_bps % 100
    );
    let _ = writeln!(s, "  sharpe      {:.2} (annualised)", r.sharpe);
    let _ = writeln!(s, "  turnover    {} {}", r.turnover, r.pnl_asset);
    let _ = writeln!(
        s,
        "  orders      {} submitted, {} filled ({}.{:02}%), {} fills",
        r.orders,
        r.orders_filled,
        r.fill_ratio_bps / 100,
        r.fill_ratio_bps % 100,
        r.fills
    );
    for (instrument, qty) in &r.positions {
        let _ = writeln!(s, "  position    {instrument} {qty}");
    }
    s
}

/// An SVG line plot of the P&L curve.
pub fn plot_svg(r: &BacktestReport) -> String {
    const W: f64 = 800.0;
    const H: f64 = 360.0;
    const PAD: f64 = 48.0;
    let pts = &r.equity;
    let (t0, t1) = (r.from.0 as f64, (r.to.0.max(r.from.0 + 1)) as f64);
    let lo = pts.iter().map(|p| p.pnl.raw()).min().unwrap_or(0).min(0) as f64;
    let hi = pts.iter().map(|p| p.pnl.raw()).max().unwrap_or(0).max(0) as f64;
    let span = (hi - lo).max(1.0);
    let x = |t: i64| PAD + (t as f64 - t0) / (t1 - t0) * (W - 2.0 * PAD);
    let y = |v: i128| H - PAD - (v as f64 - lo) / span * (H - 2.0 * PAD);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{PAD}" y="24" font-size="14">{} ({}): P&amp;L in {}</text>"#,
        r.strategy, r.kind, r.pnl_asset
    );
    let zero = y(0);
    let _ = writeln!(
        s,
        r##"<line x1="{PAD}" y1="{zero:.1}" x2="{:.1}" y2="{zero:.1}" stroke="#999" stroke-dasharray="4 3"/>"##,
        W - PAD
    );
    let _ = writeln!(
        s,
        r#"<text x="4" y="{:.1}">{}</text><text x="4" y="{:.1}">{}</text>"#,
        y(hi as i128) + 4.0,
        fmt_amount(hi),
        y(lo as i128) + 4.0,
        fmt_amount(lo)
    );
    let _ = writeln!(
        s,
        r#"<text x="{PAD}" y="{:.1}">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
        H - 16.0,
        utc(r.from.0),
        W - PAD,
        H - 16.0,
        utc(r.to.0)
    );
    let mut line = String::new();
    for p in pts {
        let _ = write!(line, "{:.1},{:.1} ", x(p.ts.0), y(p.pnl.raw()));
    }
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##,
        line.trim_end()
    );
    s.push_str("</svg>\n");
    s
}

fn fmt_amount(raw: f64) -> String {
    format!("{:.2}", raw / 1e8)
}
