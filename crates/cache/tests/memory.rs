//! The cache conformance suite against the in-memory adapter on simulated
//! time, plus memory-only checks (sweeping, URL dispatch).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tradestack_cache::conformance::{Fixture, TimeControl};
use tradestack_cache::{Cache, CacheError, MemoryCache};
use tradestack_kernel::clock::{RealClock, SimClock};
use tradestack_model::{Nanos, UnixNanos};

fn sim() -> (SimClock, Arc<MemoryCache>) {
    let clock = SimClock::new(UnixNanos::from_secs(1_700_000_000));
    let cache = Arc::new(MemoryCache::new(Arc::new(clock.clone())));
    (clock, cache)
}

/// Runs one case on an empty cache driven by a simulated clock.
async fn run<F, Fut>(_name: &'static str, case: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (clock, cache) = sim();
    case(Fixture {
        cache,
        time: TimeControl::Simulated(clock),
    })
    .await;
}

tradestack_cache::cache_conformance!(run);

#[tokio::test]
async fn expired_entries_are_swept_without_being_read() {
    let (clock, cache) = sim();
    for i in 0..100 {
        cache
            .set(&format!("old:{i}"), b"v", Some(Duration::from_secs(1)))
            .await
            .expect("set");
    }
    cache.set("keep", b"v", None).await.expect("set");
    clock.advance(Nanos::from_secs(2)).expect("advance");
    assert_eq!(cache.stored_len(), 101, "expiry is lazy until a sweep");
    assert_eq!(cache.purge_expired(), 100);
    assert_eq!(cache.stored_len(), 1);

    // Enough writes trigger a sweep on their own.
    for i in 0..100 {
        cache
            .set(&format!("old:{i}"), b"v", Some(Duration::from_secs(1)))
            .await
            .expect("set");
    }
    clock.advance(Nanos::from_secs(2)).expect("advance");
    for i in 0..2_000 {
        cache
            .set(&format!("new:{i}"), b"v", None)
            .await
            .expect("set");
    }
    assert_eq!(cache.stored_len(), 2_001, "the expired keys were swept");
}

#[tokio::test]
async fn connect_dispatches_on_scheme() {
    let cache = tradestack_cache::connect("memory://", Arc::new(RealClock::new()))
        .await
        .expect("memory cache");
    assert_eq!(cache.engine(), "memory");
    cache
        .set("k", b"v", Some(Duration::from_secs(60)))
        .await
        .expect("set");
    assert_eq!(cache.get("k").await.expect("get"), Some(b"v".to_vec()));

    let err = match tradestack_cache::connect("memcached://u:hunter2@h", Arc::new(RealClock::new()))
        .await
    {
        Ok(_) => panic!("memcached is not supported"),
        Err(e) => e,
    };
    assert!(matches!(err, CacheError::UnsupportedUrl { .. }), "{err}");
    assert!(err.to_string().contains("\"memcached\""), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
