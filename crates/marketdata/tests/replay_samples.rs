//! Replays every real sample file in `shared/data` in full and checks counts, ordering and
//! content against independent, naive reads of the same files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tradestack_marketdata::replay::depth::{
    Applied, DepthBook, DepthError, DepthProtocol, DepthReplay, GapPolicy, read_depth,
};
use tradestack_marketdata::replay::klines::{
    FtxBars, FtxVolume, read_binance_klines, read_ftx_bars,
};
use tradestack_marketdata::replay::lobster::{LobsterMessage, read_messages};
use tradestack_marketdata::replay::tardis::{TardisTrades, read_quotes, read_trades};
use tradestack_marketdata::replay::{Parsed, Speed, SymbolMap, replay_delay};
use tradestack_model::{InstrumentId, Nanos, Price, Quantity, Rate, Side, Trade, UnixNanos};

fn data(dir: &str, suffix: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(dir);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no *{suffix} in {dir:?}"))
}

/// Data lines of a text file (CRLF or LF, with or without a final newline), header excluded.
fn naive_lines(path: &Path, header: bool) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .filter(|l| !l.is_empty())
        .skip(usize::from(header))
        .collect()
}

#[test]
fn tardis_trades_replay_fully_in_order() {
    let path = data("tardis", "_trades.csv");
    let parsed = read_trades(&path, SymbolMap::new()).unwrap();
    let lines = naive_lines(&path, true);
    assert_eq!(lines.len(), 9_999);
    assert_eq!(parsed.events.len(), 9_999);
    assert!(parsed.errors.is_empty());
    assert_eq!(parsed.out_of_order, 0);
    assert!(parsed.events.windows(2).all(|w| w[0].ts <= w[1].ts));
    // Row by row against a hand split of the same lines.
    for (t, line) in parsed.events.iter().zip(&lines) {
        let c: Vec<&str> = line.split(',').collect();
        assert_eq!(t.instrument.as_str(), "BTC-USDT");
        assert_eq!(t.ts.0, c[2].parse::<i64>().unwrap() * 1_000);
        assert_eq!(t.id.0, c[4].parse::<u64>().unwrap());
        assert_eq!(
            t.aggressor,
            if c[5] == "buy" { Side::Buy } else { Side::Sell }
        );
        assert_eq!(t.price, c[6].parse::<Price>().unwrap());
        assert_eq!(t.quantity, c[7].parse::<Quantity>().unwrap());
    }
    // Trade ids are strictly increasing in this sample: nothing lost or duplicated.
    assert!(parsed.events.windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn tardis_quotes_replay_fully_in_order() {
    let path = data("tardis", "_quotes.csv");
    let parsed = read_quotes(&path, SymbolMap::new()).unwrap();
    assert_eq!(naive_lines(&path, true).len(), 9_999);
    assert_eq!(parsed.events.len(), 9_999);
    assert!(parsed.errors.is_empty());
    assert_eq!(parsed.out_of_order, 0);
    assert!(parsed.events.windows(2).all(|w| w[0].ts <= w[1].ts));
    // A real top of book is never crossed or locked.
    assert!(parsed.events.iter().all(|q| q.bid < q.ask));
    let first = &parsed.events[0];
    assert_eq!(
        (
            first.ask_size.to_string(),
            first.ask.to_string(),
            first.bid.to_string(),
            first.bid_size.to_string()
        ),
        (
            "0.84".into(),
            "9682".into(),
            "9681.92".into(),
            "0.67".into()
        )
    );
}

#[test]
fn malformed_rows_in_a_real_file_are_skipped_and_named() {
    let path = data("tardis", "_trades.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    // Damage three rows of the real file in memory: a price, a side, a truncated row.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[100] = lines[100]
        .replace(",buy,", ",bye,")
        .replace(",sell,", ",sel,");
    let mut cols: Vec<String> = lines[2_000].split(',').map(str::to_string).collect();
    cols[6] = "968x".to_string();
    lines[2_000] = cols.join(",");
    lines[5_000] = lines[5_000]
        .split(',')
        .take(4)
        .collect::<Vec<_>>()
        .join(",");
    let damaged = lines.join("\n");
    let parsed: Parsed<Trade> = Parsed::collect_sorted(
        TardisTrades::new(damaged.as_bytes(), "damaged.csv", SymbolMap::new()).unwrap(),
        |t| t.ts,
    );
    assert_eq!(parsed.events.len(), 9_996);
    let where_: Vec<(u64, &str)> = parsed
        .errors
        .iter()
        .map(|e| (e.line, e.field.as_str()))
        .collect();
    // Line numbers are 1-based and count the header.
    assert_eq!(
        where_,
        vec![(101, "side"), (2_001, "price"), (5_001, "side")]
    );
    assert!(
        parsed.errors[1]
            .to_string()
            .starts_with("damaged.csv:2001: field `price`")
    );
}

#[test]
fn binance_klines_replay_fully() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/binance");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ADABTC-1m-")
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    let mut total = 0;
    for path in files {
        let parsed = read_binance_klines(&path, InstrumentId::new("ADA-BTC"), None).unwrap();
        let lines = naive_lines(&path, false);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert_eq!(parsed.events.len(), lines.len());
        total += parsed.events.len();
        for (b, line) in parsed.events.iter().zip(&lines) {
            let c: Vec<&str> = line.split(',').collect();
            assert_eq!(b.interval, Nanos::MINUTE, "inferred from open/close time");
            assert_eq!(b.open_time.as_millis(), c[0].parse::<i64>().unwrap());
            assert_eq!(b.close, c[4].parse::<Price>().unwrap());
            assert_eq!(
                b.quote_volume.to_string(),
                c[7].trim_end_matches('0').trim_end_matches('.')
            );
            assert_eq!(b.trades, c[8].parse::<u64>().unwrap());
            assert!(b.low <= b.vwap && b.vwap <= b.high, "{b:?}");
        }
        // Consecutive minutes.
        assert!(
            parsed
                .events
                .windows(2)
                .all(|w| w[1].open_time - w[0].open_time == Nanos::MINUTE)
        );
    }
    assert_eq!(total, 21);
}

#[test]
fn ftx_bars_replay_fully() {
    let path = data("binance", "_1m.csv");
    let parsed = read_ftx_bars(
        &path,
        InstrumentId::new("BTC-PERP"),
        Nanos::MINUTE,
        FtxVolume::Quote,
    )
    .unwrap();
    // The file's float-noise volumes (more than 8 decimals) are rounded, not rejected.
    let noisy = naive_lines(&path, true)
        .iter()
        .filter(|l| {
            l.rsplit(',')
                .next()
                .unwrap()
                .split('.')
                .nth(1)
                .is_some_and(|f| f.len() > 8)
        })
        .count();
    assert!(noisy > 0);
    let reader = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let mut bars = FtxBars::new(
        reader,
        "ftx",
        InstrumentId::new("BTC-PERP"),
        Nanos::MINUTE,
        FtxVolume::Quote,
    )
    .unwrap();
    assert_eq!(bars.by_ref().filter(Result::is_ok).count(), 45_031);
    assert_eq!(bars.rounded_volumes(), noisy as u64);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors.first());
    assert_eq!(naive_lines(&path, true).len(), 45_031);
    assert_eq!(parsed.events.len(), 45_031);
    assert_eq!(parsed.out_of_order, 0);
    // 2021-12-31 23:01 UTC to 2022-02-01 05:31 UTC, every minute present.
    assert_eq!(
        parsed.events[0].open_time,
        UnixNanos::from_secs(1_640_991_660)
    );
    assert_eq!(
        parsed.events.last().unwrap().open_time,
        UnixNanos::from_secs(1_643_693_460)
    );
    assert!(
        parsed
            .events
            .windows(2)
            .all(|w| w[1].open_time - w[0].open_time == Nanos::MINUTE)
    );
    assert!(
        parsed
            .events
            .iter()
            .all(|b| b.low <= b.high && b.quote_volume.raw() >= 0)
    );
}

/// The book as a naive reader sees it: string-keyed maps fed straight from the CSV lines.
fn naive_book(
    snapshot: &Path,
    updates: &Path,
) -> (BTreeMap<Price, Quantity>, BTreeMap<Price, Quantity>) {
    let mut bids = HashMap::new();
    let mut asks = HashMap::new();
    for line in naive_lines(snapshot, true)
        .iter()
        .chain(&naive_lines(updates, true))
    {
        let c: Vec<&str> = line.split(',').collect();
        let side = if c[4] == "b" { &mut bids } else { &mut asks };
        let price: Price = c[6].parse().unwrap();
        // "0.000" and friends: only zeros and a point.
        if c[7].chars().all(|ch| ch == '0' || ch == '.') {
            side.remove(&price);
        } else {
            side.insert(price, c[7].parse::<Quantity>().unwrap());
        }
    }
    (bids.into_iter().collect(), asks.into_iter().collect())
}

#[test]
fn binance_depth_rebuilds_a_consistent_book() {
    let snap_path = data("binance", "_depth-snapshot.csv");
    let upd_path = data("binance", "_depth-updates.csv");
    let files = read_depth(&snap_path, &upd_path).unwrap();
    assert!(files.errors.is_empty(), "{:?}", files.errors);
    assert_eq!(files.rows, 100);
    assert_eq!(files.snapshot.bids.len() + files.snapshot.asks.len(), 100);
    let snapshot_lines = naive_lines(&snap_path, true);
    let snapshot_id: u64 = snapshot_lines[0]
        .split(',')
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(files.snapshot.last_update_id, snapshot_id);
    // The sample's diffs are one stream event of 100 rows.
    assert_eq!(files.events.len(), 1);
    let ev = &files.events[0];
    assert_eq!(ev.changes.len(), 100);

    // Strict Binance rules: the diffs start ~20 million updates after the snapshot, so the
    // first event does not straddle it. That is a real gap in the sample and must be reported.
    let mut strict = DepthBook::new(&files.snapshot, DepthProtocol::Futures, GapPolicy::Fail);
    let before = strict.top();
    let err = strict.apply(ev).unwrap_err();
    match err {
        DepthError::Gap {
            expected_after,
            first_update_id,
            ..
        } => {
            assert_eq!(expected_after, snapshot_id);
            assert_eq!(first_update_id, ev.first_update_id);
            assert!(first_update_id > snapshot_id + 1);
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    assert_eq!(strict.top(), before, "a refused event changes nothing");
    assert_eq!(strict.stats().applied, 0);

    // Replaying anyway (gap counted): the book stays consistent after every event.
    let mut replay = DepthReplay::new(
        &files.snapshot,
        &files.events,
        DepthProtocol::Futures,
        GapPolicy::Continue,
    );
    assert!(!replay.book().top().is_crossed());
    let mut applied_levels = 0;
    while let Some(step) = replay.next() {
        match step.outcome.unwrap() {
            Applied::Updated { levels, gap, .. } => {
                applied_levels += levels;
                assert!(gap.is_some());
            }
            Applied::Stale => panic!("nothing here is older than the snapshot"),
        }
        let book = replay.book();
        assert_eq!(step.top, book.top());
        assert!(
            !step.top.is_crossed(),
            "crossed after update {}: {:?}",
            step.last_update_id,
            step.top
        );
        assert!(book.bids().all(|(_, q)| !q.is_zero()));
        assert!(book.asks().all(|(_, q)| !q.is_zero()));
        assert!(book.bids().zip(book.bids().skip(1)).all(|(a, b)| a.0 > b.0));
        assert!(book.asks().zip(book.asks().skip(1)).all(|(a, b)| a.0 < b.0));
    }
    let book = replay.book();
    let stats = book.stats();
    println!(
        "depth sample: {} event(s) applied, {applied_levels} level changes, {} removals of absent levels, {} gap(s)",
        stats.applied, stats.removed_absent, stats.gaps
    );
    assert_eq!(
        (stats.applied, stats.gaps, stats.levels_changed),
        (1, 1, 100)
    );

    // Same book as a naive replay of the raw lines.
    let (bids, asks) = naive_book(&snap_path, &upd_path);
    assert_eq!(book.bids().collect::<BTreeMap<_, _>>(), bids);
    assert_eq!(book.asks().collect::<BTreeMap<_, _>>(), asks);
    let top = book.top();
    assert_eq!(top.bid.map(|l| l.0), bids.keys().next_back().copied());
    assert_eq!(top.ask.map(|l| l.0), asks.keys().next().copied());
    let quote = top
        .to_quote(InstrumentId::new("BTC-USDT"), book.ts())
        .unwrap();
    assert!(quote.bid < quote.ask);
}

#[test]
fn lobster_messages_replay_fully_and_match_the_book_file() {
    let msg_path = data("lobster", "_message_1.csv");
    let book_path = data("lobster", "_orderbook_1.csv");
    let parsed = read_messages(&msg_path).unwrap();
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors.first());
    let lines = naive_lines(&msg_path, true);
    assert_eq!(lines.len(), 57_515);
    assert_eq!(parsed.events.len(), 57_515);
    assert_eq!(parsed.out_of_order, 0);
    // Types counted by hand.
    let mut naive_types: BTreeMap<u8, usize> = BTreeMap::new();
    for l in &lines {
        *naive_types
            .entry(l.split(',').nth(1).unwrap().parse().unwrap())
            .or_default() += 1;
    }
    let mut types: BTreeMap<u8, usize> = BTreeMap::new();
    for m in &parsed.events {
        *types.entry(m.type_code()).or_default() += 1;
    }
    assert_eq!(types, naive_types);
    assert!(types.len() >= 5, "{types:?}");
    // Times are ordered and inside the file's window (34,200,000 to 57,600,000 ms).
    assert!(parsed.events.windows(2).all(|w| w[0].time() <= w[1].time()));
    assert!(
        parsed
            .events
            .iter()
            .all(|m| { (Nanos::from_secs(34_200)..=Nanos::from_secs(57_600)).contains(&m.time()) })
    );
    // A visible execution trades at the best price of its side in the book just before it:
    // this checks time, type, price scaling and direction together against the book file.
    let book = naive_lines(&book_path, true);
    assert_eq!(book.len(), parsed.events.len());
    let level = |row: &str, i: usize| -> Price {
        Price::from_raw(row.split(',').nth(i).unwrap().parse::<i64>().unwrap() * 10_000)
    };
    let mut checked = 0;
    for (i, m) in parsed.events.iter().enumerate().skip(1) {
        if let LobsterMessage::ExecuteVisible(o) = m {
            let prev = &book[i - 1];
            let best = match o.side {
                Side::Buy => level(prev, 2),
                Side::Sell => level(prev, 0),
            };
            assert_eq!(o.price, best, "message {i}: {m:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, naive_types[&4]);
}

#[test]
fn pacing_a_real_replay() {
    let parsed = read_trades(&data("tardis", "_trades.csv"), SymbolMap::new()).unwrap();
    let first = parsed.events[0].ts;
    let last = parsed.events.last().unwrap().ts;
    let ten = Speed::Multiple("10".parse::<Rate>().unwrap());
    let delays: Vec<Nanos> = parsed
        .events
        .iter()
        .map(|t| replay_delay(first, t.ts, ten).unwrap())
        .collect();
    assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(delays[0], Nanos::ZERO);
    assert_eq!(delays.last().unwrap().0, (last - first).0 / 10);
    assert_eq!(
        replay_delay(first, last, Speed::Realtime).unwrap(),
        last - first
    );
    assert_eq!(replay_delay(first, last, Speed::Max).unwrap(), Nanos::ZERO);
}
