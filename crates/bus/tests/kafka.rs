//! The Kafka adapter against a real broker (tansu, started by `.ci/run`).

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tradestack_bus::dedup::Deduplicator;
use tradestack_bus::kafka::KafkaSettings;
use tradestack_bus::outbox::{OutboxRelay, OutboxSettings};
use tradestack_bus::{Bus, Request, Topic};
use tradestack_kernel::RealClock;
use tradestack_store::WriteBatch;

fn settings(brokers: &str) -> KafkaSettings {
    let mut s = KafkaSettings::new(brokers);
    // A fresh prefix per test run keeps runs independent on a shared broker.
    s.topic_prefix = format!("{}.", tradestack_testkit::unique_name("t"));
    s.group_prefix = tradestack_testkit::unique_name("g");
    s.message_timeout = Duration::from_secs(120);
    s
}

fn bus(s: KafkaSettings, instance: u64) -> Bus {
    Bus::kafka(s, Arc::new(RealClock), instance).expect("kafka bus")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_messages_keep_per_instrument_order_and_groups_resume() {
    let Some(brokers) = tradestack_testkit::kafka() else {
        return;
    };
    let s = settings(&brokers);
    let bus = bus(s.clone(), 1);
    let topic = Topic::<(String, u32)>::new("trades");
    let mut sub = bus.subscribe(&topic, Some("risk")).await.unwrap();
    let instruments = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "USDC-USDT"];
    for i in 0..200u32 {
        let inst = instruments[(i % 4) as usize];
        bus.publish(&topic, Some(inst), (inst.to_string(), i))
            .await
            .unwrap();
    }
    let mut last: HashMap<String, u32> = HashMap::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 200 {
        let d = tokio::time::timeout_at(deadline.into(), sub.recv())
            .await
            .expect("all messages within 60 s")
            .unwrap();
        let (inst, n) = d.msg;
        assert_eq!(d.key.as_deref(), Some(inst.as_str()));
        if let Some(prev) = last.insert(inst.clone(), n) {
            assert!(n > prev, "{inst}: {n} after {prev}: per-key order broken");
        }
        seen += 1;
    }
    // Another group is independent: it reads the whole log from the beginning.
    let mut audit = bus.subscribe(&topic, Some("audit")).await.unwrap();
    let mut count = 0;
    while count < 200 {
        tokio::time::timeout_at(deadline.into(), audit.recv())
            .await
            .expect("second group reads all 200")
            .unwrap();
        count += 1;
    }
}

/// The exchange's book deltas go out without waiting for each ack: once
/// the topic is ready, queued messages arrive, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_publish_queues_in_order_once_the_topic_is_ready() {
    let Some(brokers) = tradestack_testkit::kafka() else {
        return;
    };
    let bus = bus(settings(&brokers), 8);
    let topic = Topic::<u32>::new("exchange.book");
    let publisher = bus.publisher(&topic).unwrap();
    publisher.ready().await.unwrap();
    let mut sub = bus
        .subscribe(&topic, Some("marketdata-feed"))
        .await
        .unwrap();
    for n in 0..500 {
        publisher.try_publish(Some("BTC-USDT"), n).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0..500 {
        let d = tokio::time::timeout_at(deadline.into(), sub.recv())
            .await
            .unwrap_or_else(|_| panic!("message {n} within 60 s"))
            .unwrap();
        assert_eq!(d.msg, n);
    }
}

/// A service names one group for all its topics (the audit reads five):
/// every subscription receives its own topic's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_group_name_across_topics_receives_every_topic() {
    let Some(brokers) = tradestack_testkit::kafka() else {
        return;
    };
    let bus = bus(settings(&brokers), 7);
    let topics = ["exchange.trades", "exchange.book", "risk.alerts"].map(Topic::<u32>::new);
    let mut subs = Vec::new();
    for t in &topics {
        subs.push(bus.subscribe(t, Some("marketdata-feed")).await.unwrap());
    }
    for (i, t) in topics.iter().enumerate() {
        for n in 0..10 {
            bus.publish(t, Some("k"), i as u32 * 100 + n).await.unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, sub) in subs.iter_mut().enumerate() {
        for n in 0..10 {
            let d = tokio::time::timeout_at(deadline.into(), sub.recv())
                .await
                .unwrap_or_else(|_| panic!("topic {i}: message {n} within 60 s"))
                .unwrap();
            assert_eq!(d.msg, i as u32 * 100 + n);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_over_kafka() {
    let Some(brokers) = tradestack_testkit::kafka() else {
        return;
    };
    let s = settings(&brokers);
    let server = bus(s.clone(), 2);
    let client = bus(s, 3);
    let topic = Topic::<Request<String>>::new("echo");
    server
        .serve(&topic, Some("echo-svc"), |s: String| async move {
            Ok(s.to_uppercase())
        })
        .await
        .unwrap();
    // The first request may race the responder's group join; allow a retry.
    let mut answer = None;
    for _ in 0..5 {
        match client
            .request::<String, String>(&topic, None, "ping".into(), Duration::from_secs(15))
            .await
        {
            Ok(a) => {
                answer = Some(a);
                break;
            }
            Err(e) => eprintln!("request retry: {e}"),
        }
    }
    assert_eq!(answer.as_deref(), Some("PING"));
}

/// A broker of our own on a free port, so the test can kill it.
struct Broker {
    child: Option<Child>,
    port: u16,
}

impl Broker {
    fn binary() -> Option<String> {
        let bin = std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".into());
        let ok = Command::new(&bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(bin);
        }
        let msg = format!("tansu binary not found ({bin}); .ci/run installs it");
        assert!(!tradestack_testkit::in_ci(), "CI=true and {msg}");
        eprintln!("SKIPPED: {msg}");
        None
    }

    fn start(port: u16) -> Broker {
        let bin = Broker::binary().expect("checked before");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tansu");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            child: Some(child),
            port,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGKILL: no chance to flush anything.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

// The acceptance test for the outbox and the Kafka adapter together: the
// broker is SIGKILLed (tansu with memory storage, so it comes back empty) and
// restarted while events are committed; every event must arrive, and a
// consumer deduplicating by event id must see each one exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_mid_stream_loses_nothing() {
    if Broker::binary().is_none() {
        return;
    }
    const N: u64 = 3000;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("tradestack_bus=warn")
        .with_test_writer()
        .try_init();
    let port = free_port();
    let mut broker = Broker::start(port);
    let brokers = format!("127.0.0.1:{port}");
    let mut s = settings(&brokers);
    s.partitions = 2;
    // tansu 0.6's group coordinator does not recover a group after a broker
    // restart or a member leaving, so this consumer takes its partitions itself.
    s.membership = tradestack_bus::kafka::Membership::Static;
    let dir = tempfile::tempdir().unwrap();
    let store = tradestack_store::connect(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    ))
    .await
    .unwrap();
    let bus = bus(s, 4);
    let topic = Topic::<u64>::new("events");

    // Consumer: deduplicates by event id and records every number it saw.
    // It joins its group and proves it receives (a warm-up message) before
    // the publish loop starts, as a running service would have.
    let mut sub = bus.subscribe(&topic, Some("auditor")).await.unwrap();
    let warmup = u64::MAX;
    let joined = async {
        loop {
            bus.publish(&topic, None, warmup).await.unwrap();
            if let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(3), sub.recv()).await {
                assert_eq!(d.msg, warmup);
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), joined)
        .await
        .expect("consumer joined its group within 60 s");
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let consumer = tokio::spawn(async move {
        let mut dedup = Deduplicator::new(1_000_000);
        let mut seen: HashMap<u64, u32> = HashMap::new();
        let mut done_tx = Some(done_tx);
        while let Some(d) = sub.recv().await {
            if d.msg == warmup || !dedup.first_time(d.id) {
                continue;
            }
            *seen.entry(d.msg).or_default() += 1;
            if seen.len().is_multiple_of(500) {
                eprintln!(
                    "consumer: {} unique, {} duplicates",
                    seen.len(),
                    dedup.duplicates()
                );
            }
            if seen.len() as u64 == N
                && let Some(tx) = done_tx.take()
            {
                let _ = tx.send((seen.clone(), dedup.duplicates()));
            }
        }
    });

    // Relay: outbox to Kafka, running throughout.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let relay = OutboxRelay::new(
        store.clone(),
        bus.clone(),
        OutboxSettings {
            poll_interval: Duration::from_millis(10),
            batch: 200,
            retain_delivered: Duration::from_secs(3600),
        },
    );
    let relay = tokio::spawn(relay.run(stop_rx));

    // Publish loop: each event is committed to the store's outbox; the broker
    // is killed a third of the way in and restarted at two thirds.
    for i in 0..N {
        let env = tradestack_bus::envelope::encode(
            bus.next_id(),
            "events",
            Some(&format!("k{}", i % 7)),
            bus.now(),
            &i,
        )
        .unwrap();
        store.commit(WriteBatch::new().outbox(env)).await.unwrap();
        if i == N / 3 {
            broker.kill();
            eprintln!("broker killed after {i} events");
        }
        if i == 2 * N / 3 {
            broker = Broker::start(broker.port);
            eprintln!("broker restarted after {i} events");
        }
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    let (seen, duplicates) = tokio::time::timeout(Duration::from_secs(180), &mut done_rx)
        .await
        .expect("consumer saw every event within 180 s")
        .unwrap();
    let missing: BTreeSet<u64> = (0..N).filter(|i| !seen.contains_key(i)).collect();
    assert!(missing.is_empty(), "lost events: {missing:?}");
    assert!(
        seen.values().all(|&c| c == 1),
        "an event passed deduplication twice"
    );
    eprintln!("all {N} events seen exactly once after dropping {duplicates} redeliveries");
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!(stats.pending, 0);

    stop_tx.send(true).unwrap();
    relay.await.unwrap();
    bus.close();
    consumer.abort();
    // Dropping the subscription commits its offsets: while the broker is up.
    let _ = consumer.await;
    drop(broker);
}
