//! The adapter conformance suite: one set of cases every [`Cache`] adapter
//! must pass, run against the memory and Redis adapters by the integration
//! tests through [`crate::cache_conformance!`].
//!
//! Cases get a [`Fixture`]: an empty cache (for Redis, a unique namespace on
//! the shared server) and a way to let time pass. With simulated time the
//! cases also check exact expiry boundaries; with real time they only assume
//! that a key eventually disappears after its TTL, however slow the machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tradestack_kernel::clock::SimClock;
use tradestack_model::Nanos;

use crate::{Cache, CacheError};

/// Generates one `#[tokio::test]` per conformance case, each calling
/// `$run(name, case)` where `case: fn(Fixture) -> impl Future<Output = ()>`.
#[doc(hidden)]
#[macro_export]
macro_rules! cache_conformance {
    ($run:path) => {
        $crate::cache_conformance!(@cases $run;
            ping_and_engine,
            get_set_delete,
            ttl_expiry,
            set_without_ttl_clears_ttl,
            expire_semantics,
            set_nx_semantics,
            incr_semantics,
            namespaces_are_isolated,
            glob_characters_in_prefixes_are_literal,
            keys_scans_many_keys,
            mget_in_order,
        );
    };
    (@cases $run:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $run(stringify!($case), $crate::conformance::$case).await;
            }
        )*
    };
}

/// How a case lets time pass.
#[derive(Clone, Debug)]
pub enum TimeControl {
    /// The cache expires by this clock; passing time advances it.
    Simulated(SimClock),
    /// The cache expires by wall time; passing time sleeps.
    Real,
}

/// An empty cache for one case.
#[derive(Clone)]
pub struct Fixture {
    /// The cache under test.
    pub cache: Arc<dyn Cache>,
    /// How time passes for it.
    pub time: TimeControl,
}

/// How long a real-time case waits for a key to expire after its TTL.
const REAL_EXPIRY_GRACE: Duration = Duration::from_secs(5);

/// A short TTL for expiry checks (Redis needs real time to pass).
const SHORT: Duration = Duration::from_secs(1);

/// A TTL no case outlives, for checks that a key is still there.
const LONG: Duration = Duration::from_secs(600);

impl Fixture {
    /// Lets `d` pass.
    pub async fn pass(&self, d: Duration) {
        match &self.time {
            TimeControl::Simulated(clock) => {
                if let Err(e) = clock.advance(Nanos::from_std(d)) {
                    panic!("advancing the simulated clock failed: {e}");
                }
            }
            TimeControl::Real => tokio::time::sleep(d).await,
        }
    }

    /// True when time is simulated (exact boundaries can be asserted).
    pub fn simulated(&self) -> bool {
        matches!(self.time, TimeControl::Simulated(_))
    }

    /// Lets `ttl` pass, then waits until `key` is gone (at once with
    /// simulated time, within a grace period with real time).
    pub async fn assert_expires(&self, cache: &Arc<dyn Cache>, key: &str, ttl: Duration) {
        self.pass(ttl).await;
        let start = Instant::now();
        loop {
            if ok(cache.get(key).await, "get").is_none() {
                return;
            }
            if self.simulated() || start.elapsed() > REAL_EXPIRY_GRACE {
                panic!("{key:?} still present after its TTL of {ttl:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn ok<T>(result: Result<T, CacheError>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

fn assert_ttl_within(ttl: Option<Duration>, max: Duration) {
    match ttl {
        Some(t) => assert!(
            t > Duration::ZERO && t <= max,
            "ttl {t:?} not in (0, {max:?}]"
        ),
        None => panic!("expected a ttl up to {max:?}, found none"),
    }
}

// ------------------------------------------------------------------ cases

/// The cache answers pings and names its engine.
pub async fn ping_and_engine(fx: Fixture) {
    ok(fx.cache.ping().await, "ping");
    assert!(matches!(fx.cache.engine(), "memory" | "redis"));
}

/// Values round-trip byte for byte, overwrite, and delete once.
pub async fn get_set_delete(fx: Fixture) {
    let c = &fx.cache;
    assert_eq!(ok(c.get("k").await, "get"), None);
    let all_bytes: Vec<u8> = (0..=255).collect();
    ok(c.set("k", &all_bytes, None).await, "set");
    assert_eq!(ok(c.get("k").await, "get"), Some(all_bytes));
    ok(c.set("k", b"second", None).await, "set");
    assert_eq!(ok(c.get("k").await, "get"), Some(b"second".to_vec()));
    ok(c.set("empty", b"", None).await, "set");
    assert_eq!(ok(c.get("empty").await, "get"), Some(Vec::new()));
    ok(c.set("ключ/ü ✓", b"v", None).await, "set");
    assert_eq!(ok(c.get("ключ/ü ✓").await, "get"), Some(b"v".to_vec()));

    assert!(ok(c.delete("k").await, "delete"));
    assert!(!ok(c.delete("k").await, "delete"));
    assert_eq!(ok(c.get("k").await, "get"), None);
    assert_eq!(ok(c.ttl("k").await, "ttl"), None);
}

/// A key set with a TTL reports it and disappears after it.
pub async fn ttl_expiry(fx: Fixture) {
    let c = &fx.cache;
    ok(c.set("long", b"v", Some(LONG)).await, "set");
    assert_ttl_within(ok(c.ttl("long").await, "ttl"), LONG);
    assert_eq!(ok(c.get("long").await, "get"), Some(b"v".to_vec()));

    ok(c.set("short", b"v", Some(SHORT)).await, "set");
    if fx.simulated() {
        // Exact boundary: present 1 ms before the deadline, gone at it.
        fx.pass(SHORT - Duration::from_millis(1)).await;
        assert_eq!(ok(c.get("short").await, "get"), Some(b"v".to_vec()));
        assert_eq!(
            ok(c.ttl("short").await, "ttl"),
            Some(Duration::from_millis(1))
        );
        fx.assert_expires(c, "short", Duration::from_millis(1))
            .await;
    } else {
        fx.assert_expires(c, "short", SHORT).await;
    }
    assert_eq!(ok(c.ttl("short").await, "ttl"), None);
    assert!(!ok(c.delete("short").await, "delete"), "expired = missing");
    assert!(!ok(c.keys("").await, "keys").contains(&"short".to_string()));
    assert_eq!(ok(c.get("long").await, "get"), Some(b"v".to_vec()));
}

/// `set` without a TTL makes an expiring key permanent (as Redis SET does).
pub async fn set_without_ttl_clears_ttl(fx: Fixture) {
    let c = &fx.cache;
    ok(c.set("k", b"1", Some(SHORT)).await, "set");
    ok(c.set("k", b"2", None).await, "set");
    assert_eq!(ok(c.ttl("k").await, "ttl"), None);
    fx.pass(SHORT + Duration::from_millis(200)).await;
    assert_eq!(ok(c.get("k").await, "get"), Some(b"2".to_vec()));
}

/// `expire` sets or refreshes a TTL on present keys only.
pub async fn expire_semantics(fx: Fixture) {
    let c = &fx.cache;
    assert!(!ok(c.expire("missing", LONG).await, "expire"));
    ok(c.set("k", b"v", None).await, "set");
    assert_eq!(ok(c.ttl("k").await, "ttl"), None);
    assert!(ok(c.expire("k", LONG).await, "expire"));
    assert_ttl_within(ok(c.ttl("k").await, "ttl"), LONG);
    // Shortening works too.
    assert!(ok(c.expire("k", SHORT).await, "expire"));
    assert_ttl_within(ok(c.ttl("k").await, "ttl"), SHORT);
    fx.assert_expires(c, "k", SHORT).await;
    assert!(
        !ok(c.expire("k", LONG).await, "expire"),
        "expired = missing"
    );
}

/// `set_nx` stores only when the key is absent (or has expired).
pub async fn set_nx_semantics(fx: Fixture) {
    let c = &fx.cache;
    assert!(ok(c.set_nx("lock", b"owner-1", None).await, "set_nx"));
    assert!(!ok(c.set_nx("lock", b"owner-2", None).await, "set_nx"));
    assert_eq!(ok(c.get("lock").await, "get"), Some(b"owner-1".to_vec()));
    assert!(ok(c.delete("lock").await, "delete"));
    assert!(ok(c.set_nx("lock", b"owner-2", None).await, "set_nx"));

    assert!(ok(c.set_nx("lease", b"a", Some(SHORT)).await, "set_nx"));
    assert_ttl_within(ok(c.ttl("lease").await, "ttl"), SHORT);
    fx.assert_expires(c, "lease", SHORT).await;
    assert!(ok(c.set_nx("lease", b"b", Some(LONG)).await, "set_nx"));
    assert_eq!(ok(c.get("lease").await, "get"), Some(b"b".to_vec()));
}

/// `incr` counts from zero, gives a TTL to new counters only, and refuses
/// non-integers and overflow.
pub async fn incr_semantics(fx: Fixture) {
    let c = &fx.cache;
    assert_eq!(ok(c.incr("n", 5, None).await, "incr"), 5);
    assert_eq!(ok(c.incr("n", -7, None).await, "incr"), -2);
    assert_eq!(ok(c.get("n").await, "get"), Some(b"-2".to_vec()));
    assert_eq!(ok(c.ttl("n").await, "ttl"), None);
    // An existing persistent counter does not gain a TTL.
    assert_eq!(ok(c.incr("n", 1, Some(LONG)).await, "incr"), -1);
    assert_eq!(ok(c.ttl("n").await, "ttl"), None);

    // A new counter gets ttl_if_new; later increments keep, not reset, it.
    assert_eq!(ok(c.incr("window", 1, Some(SHORT)).await, "incr"), 1);
    assert_ttl_within(ok(c.ttl("window").await, "ttl"), SHORT);
    assert_eq!(ok(c.incr("window", 1, Some(LONG)).await, "incr"), 2);
    assert_ttl_within(ok(c.ttl("window").await, "ttl"), SHORT);
    fx.assert_expires(c, "window", SHORT).await;
    assert_eq!(ok(c.incr("window", 1, Some(SHORT)).await, "incr"), 1);

    // A counter written with set is still a counter.
    ok(c.set("typed", b"41", None).await, "set");
    assert_eq!(ok(c.incr("typed", 1, None).await, "incr"), 42);

    ok(c.set("text", b"abc", None).await, "set");
    let err = c.incr("text", 1, None).await.expect_err("not an integer");
    assert!(matches!(err, CacheError::NotAnInteger { .. }), "{err}");
    let err = c
        .incr("text", 1, Some(LONG))
        .await
        .expect_err("not an integer");
    assert!(matches!(err, CacheError::NotAnInteger { .. }), "{err}");
    assert_eq!(ok(c.get("text").await, "get"), Some(b"abc".to_vec()));

    ok(
        c.set("max", i64::MAX.to_string().as_bytes(), None).await,
        "set",
    );
    let err = c.incr("max", 1, None).await.expect_err("overflow");
    assert!(matches!(err, CacheError::NotAnInteger { .. }), "{err}");
    assert_eq!(
        ok(c.incr("max", -1, None).await, "incr"),
        i64::MAX - 1,
        "a failed incr leaves the value alone"
    );
}

/// Namespaces see only their own keys; the parent sees them prefixed.
pub async fn namespaces_are_isolated(fx: Fixture) {
    let c = &fx.cache;
    let risk = c.namespace("risk");
    let registry = c.namespace("registry");
    ok(risk.set("k", b"R", None).await, "set");
    ok(registry.set("k", b"G", None).await, "set");
    ok(registry.set("svc:1", b"x", None).await, "set");
    assert_eq!(ok(risk.get("k").await, "get"), Some(b"R".to_vec()));
    assert_eq!(ok(registry.get("k").await, "get"), Some(b"G".to_vec()));
    assert_eq!(ok(c.get("risk:k").await, "get"), Some(b"R".to_vec()));

    assert_eq!(ok(risk.keys("").await, "keys"), vec!["k"]);
    assert_eq!(ok(registry.keys("").await, "keys"), vec!["k", "svc:1"]);
    assert_eq!(ok(registry.keys("svc:").await, "keys"), vec!["svc:1"]);
    assert_eq!(
        ok(c.keys("").await, "keys"),
        vec!["registry:k", "registry:svc:1", "risk:k"]
    );

    assert!(ok(registry.delete("k").await, "delete"));
    assert_eq!(ok(risk.get("k").await, "get"), Some(b"R".to_vec()));
    assert_eq!(ok(risk.incr("hits", 2, None).await, "incr"), 2);
    assert_eq!(ok(c.get("risk:hits").await, "get"), Some(b"2".to_vec()));

    // Nested namespaces compose.
    let nested = risk.namespace("limits");
    ok(nested.set("acct-1", b"100", Some(LONG)).await, "set");
    assert_eq!(
        ok(c.get("risk:limits:acct-1").await, "get"),
        Some(b"100".to_vec())
    );
    assert_eq!(
        ok(risk.keys("limits:").await, "keys"),
        vec!["limits:acct-1"]
    );
    assert_eq!(ok(nested.keys("").await, "keys"), vec!["acct-1"]);
    assert_ttl_within(ok(nested.ttl("acct-1").await, "ttl"), LONG);
    assert_eq!(
        ok(nested.mget(&["acct-1", "acct-2"]).await, "mget"),
        vec![Some(b"100".to_vec()), None]
    );
}

/// Glob metacharacters in a prefix match only themselves.
pub async fn glob_characters_in_prefixes_are_literal(fx: Fixture) {
    let c = &fx.cache;
    let weird = c.namespace(r"we*rd[1]?\x");
    // Would match the unescaped pattern `we*rd[1]?\x:*`.
    let decoy = c.namespace("weXYrd1Zx");
    ok(weird.set("k", b"w", None).await, "set");
    ok(decoy.set("k", b"d", None).await, "set");
    assert_eq!(ok(weird.keys("").await, "keys"), vec!["k"]);
    assert_eq!(ok(decoy.keys("").await, "keys"), vec!["k"]);
    assert_eq!(ok(weird.get("k").await, "get"), Some(b"w".to_vec()));
    assert_eq!(ok(c.keys("we*").await, "keys"), vec![r"we*rd[1]?\x:k"]);
}

/// Prefix scans return every matching key across many SCAN pages.
pub async fn keys_scans_many_keys(fx: Fixture) {
    let c = &fx.cache;
    let total = 1_500;
    for i in 0..total {
        ok(
            c.set(
                &format!("bulk:{i:04}"),
                i.to_string().as_bytes(),
                Some(LONG),
            )
            .await,
            "set",
        );
    }
    ok(c.set("bulky", b"not under bulk:", None).await, "set");
    let keys = ok(c.keys("bulk:").await, "keys");
    assert_eq!(keys.len(), total);
    let expected: Vec<String> = (0..total).map(|i| format!("bulk:{i:04}")).collect();
    assert_eq!(keys, expected, "sorted, complete, no duplicates");
    assert_eq!(ok(c.keys("bulk:00").await, "keys").len(), 100);
    assert_eq!(ok(c.keys("bulk").await, "keys").len(), total + 1);
    assert!(ok(c.keys("nothing-here:").await, "keys").is_empty());
}

/// `mget` returns values in request order, `None` for missing keys.
pub async fn mget_in_order(fx: Fixture) {
    let c = &fx.cache;
    assert!(ok(c.mget(&[]).await, "mget").is_empty());
    ok(c.set("a", b"1", None).await, "set");
    ok(c.set("c", b"3", None).await, "set");
    ok(c.set("gone", b"x", Some(SHORT)).await, "set");
    fx.assert_expires(c, "gone", SHORT).await;
    assert_eq!(
        ok(c.mget(&["c", "b", "a", "gone", "a"]).await, "mget"),
        vec![
            Some(b"3".to_vec()),
            None,
            Some(b"1".to_vec()),
            None,
            Some(b"1".to_vec())
        ]
    );
}
