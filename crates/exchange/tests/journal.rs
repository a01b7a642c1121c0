//! Journal and sequencer: group commit, torn tails, snapshots and recovery.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use tradestack_exchange::{
    AccountSeed, Command, ExchangeMetrics, ExchangeSettings, FsyncPolicy, Journal, PlaceOrder,
    Sequencer, SequencerSettings,
};
use tradestack_kernel::{Clock, SimClock};
use tradestack_matching::StpMode;
use tradestack_model::{
    AccountId, Amount, AssetCode, InstrumentId, OrderType, Price, Quantity, Side, TimeInForce,
    UnixNanos,
};

fn settings() -> ExchangeSettings {
    let mut s = ExchangeSettings::default();
    for name in ["alice", "bob"] {
        let mut balances = BTreeMap::new();
        balances.insert(
            AssetCode::new("USDT"),
            "100000000".parse::<Amount>().unwrap(),
        );
        balances.insert(AssetCode::new("BTC"), "1000".parse::<Amount>().unwrap());
        s.accounts.push(AccountSeed {
            id: AccountId::new(name),
            tier: "default".into(),
            stp: StpMode::CancelNewest,
            balances,
            api_key: None,
            api_secret: None,
            api_secret_sealed: None,
        });
    }
    s
}

fn order(i: u64) -> Command {
    let buy = i.is_multiple_of(2);
    Command::Place(PlaceOrder {
        account: AccountId::new(if buy { "alice" } else { "bob" }),
        instrument: InstrumentId::new("BTC-USDT"),
        client_order_id: None,
        side: if buy { Side::Buy } else { Side::Sell },
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        price: Some(Price::from_raw(
            (50_000 + (i % 17) as i64 - 8) * 100_000_000,
        )),
        stop_price: None,
        quantity: Quantity::from_raw(((i % 5) as i64 + 1) * 1_000_000),
        expire_at: None,
        stp: None,
    })
}

fn seq_settings(dir: &std::path::Path, snapshot_every: u64) -> SequencerSettings {
    SequencerSettings {
        dir: dir.to_path_buf(),
        fsync: FsyncPolicy::Always,
        snapshot_every,
        batch_max: 64,
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SimClock::new(UnixNanos(1_700_000_000_000_000_000)))
}

/// Runs `n` orders through a sequencer and returns the exported state.
async fn run(dir: &std::path::Path, from: u64, n: u64, snapshot_every: u64) -> (String, u64) {
    let seq = Sequencer::start(
        settings(),
        seq_settings(dir, snapshot_every),
        clock(),
        ExchangeMetrics::default(),
        None,
    )
    .unwrap();
    let h = seq.handle.clone();
    // Concurrent senders, so batches form.
    let mut tasks = Vec::new();
    for t in 0..4 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            for i in (from + t..from + n).step_by(4) {
                h.execute(order(i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let state = h.read(|ex| format!("{:?}", ex.export())).await.unwrap();
    let last = h.read(|ex| ex.export().next_order_id).await.unwrap();
    drop(h);
    drop(seq.handle);
    seq.thread.join().unwrap();
    (state, last)
}

#[tokio::test]
async fn restart_rebuilds_the_same_state_with_and_without_snapshots() {
    for snapshot_every in [1_000_000, 50] {
        let dir = tempfile::tempdir().unwrap();
        let (before, _) = run(dir.path(), 0, 400, snapshot_every).await;
        let seq = Sequencer::start(
            settings(),
            seq_settings(dir.path(), snapshot_every),
            clock(),
            ExchangeMetrics::default(),
            None,
        )
        .unwrap();
        eprintln!("snapshot every {snapshot_every}: {:?}", seq.recovery);
        let after = seq
            .handle
            .read(|ex| format!("{:?}", ex.export()))
            .await
            .unwrap();
        assert_eq!(before, after);
        if snapshot_every == 50 {
            // Old segments and snapshots were pruned.
            let files = std::fs::read_dir(dir.path()).unwrap().count();
            assert!(files <= 6, "{files} files left");
        }
    }
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_rest_recovered() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), 0, 100, 1_000_000).await;
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    // A crash mid-write: half a header and garbage.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&[0x40, 0, 0, 0, 1, 2])
        .unwrap();
    let (_, recovered) = Journal::open(dir.path(), FsyncPolicy::Always).unwrap();
    assert_eq!(recovered.entries.len(), 100);
    assert_eq!(recovered.truncated_bytes, 6);
    // And it goes on appending after the cut.
    let (_, last) = run(dir.path(), 100, 20, 1_000_000).await;
    assert_eq!(last, 121);
}

#[test]
fn fsync_policy_reads_from_text() {
    #[derive(serde::Deserialize)]
    struct T {
        fsync: FsyncPolicy,
    }
    let t: T = toml::from_str("fsync = \"5ms\"").unwrap();
    assert_eq!(
        t.fsync,
        FsyncPolicy::Interval(std::time::Duration::from_millis(5))
    );
    let t: T = toml::from_str("fsync = \"always\"").unwrap();
    assert_eq!(t.fsync, FsyncPolicy::Always);
    assert!(toml::from_str::<T>("fsync = \"sometimes\"").is_err());
}
