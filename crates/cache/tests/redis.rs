//! The cache conformance suite against the real Redis server (each case in a
//! unique namespace, cleaned up afterwards), plus Redis-only checks: ACL users
//! confined to a prefix, reconnection, and credentials kept out of errors.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tradestack_cache::conformance::{Fixture, TimeControl};
use tradestack_cache::{Cache, CacheError, RedisCache};
use tradestack_testkit::unique_name;

/// Deletes every key under `cache` (a namespace).
async fn clean(cache: &Arc<dyn Cache>) {
    match cache.keys("").await {
        Ok(keys) => {
            for key in keys {
                let _ = cache.delete(&key).await;
            }
        }
        Err(e) => eprintln!("cleanup scan failed: {e}"),
    }
}

/// Runs one case in a fresh namespace of the real server, cleaning up after.
async fn run<F, Fut>(_name: &'static str, case: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = tradestack_testkit::redis() else {
        return;
    };
    let root: Arc<dyn Cache> = Arc::new(RedisCache::connect(&url).await.expect("connect"));
    let cache = root.namespace(&unique_name("tscache"));
    let outcome = tokio::spawn(case(Fixture {
        cache: Arc::clone(&cache),
        time: TimeControl::Real,
    }))
    .await;
    clean(&cache).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

tradestack_cache::cache_conformance!(run);

/// `url` with `user:password@` as its credentials.
fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{rest}")
}

/// A raw admin connection for ACL and CLIENT commands.
async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("admin client")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection")
}

/// Creates an ACL user allowed only `~<prefix>:*`, runs `body` as that user
/// (with the URL to connect as it), then deletes the user and its keys.
async fn as_acl_user<F, Fut>(body: F)
where
    F: FnOnce(String, String, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = tradestack_testkit::redis() else {
        return;
    };
    let user = unique_name("tsacl");
    let prefix = unique_name("tsaclp");
    let password = unique_name("pw");
    let mut admin = admin(&url).await;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{password}"))
        .arg(format!("~{prefix}:*"))
        .arg("+@all")
        .query_async::<()>(&mut admin)
        .await
        .expect("ACL SETUSER");
    let user_url = with_credentials(&url, &user, &password);
    let outcome = tokio::spawn(body(user_url, prefix.clone(), user.clone())).await;

    let root: Arc<dyn Cache> = Arc::new(RedisCache::connect(&url).await.expect("connect"));
    clean(&root.namespace(&prefix)).await;
    if let Err(e) = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async::<i64>(&mut admin)
        .await
    {
        eprintln!("ACL DELUSER {user} failed: {e}");
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn acl_user_is_confined_to_its_prefix() {
    as_acl_user(|url, prefix, _user| async move {
        let password = url
            .split_once("://")
            .and_then(|(_, r)| r.split_once('@'))
            .and_then(|(creds, _)| creds.split_once(':'))
            .map(|(_, p)| p.to_owned())
            .expect("password in url");
        let redis = RedisCache::connect(&url)
            .await
            .expect("connect as ACL user");
        let shown = format!("{redis:?} {}", redis.target());
        assert!(!shown.contains(&password), "{shown}");
        assert!(shown.contains("***"), "{shown}");

        let cache: Arc<dyn Cache> = Arc::new(redis);
        let mine = cache.namespace(&prefix);
        mine.set("k", b"v", Some(Duration::from_secs(60)))
            .await
            .expect("set inside the prefix");
        assert_eq!(mine.get("k").await.expect("get"), Some(b"v".to_vec()));
        assert_eq!(
            mine.incr("n", 3, Some(Duration::from_secs(60)))
                .await
                .expect("incr inside the prefix"),
            3
        );
        assert_eq!(mine.keys("").await.expect("keys"), vec!["k", "n"]);

        let outside = format!("{}_other:k", prefix);
        let err = cache
            .set(&outside, b"v", None)
            .await
            .expect_err("writing outside the prefix must be refused");
        assert!(err.is_permission_denied(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("permission denied") && text.contains("set"),
            "{text}"
        );
        assert!(!text.contains(&password), "{text}");
        let err = cache.get(&outside).await.expect_err("reading outside");
        assert!(err.is_permission_denied(), "{err}");
        let err = cache
            .incr(&outside, 1, Some(Duration::from_secs(60)))
            .await
            .expect_err("MULTI outside the prefix");
        assert!(err.is_permission_denied(), "{err}");
        // The refusals did not break the connection.
        assert_eq!(mine.get("k").await.expect("get"), Some(b"v".to_vec()));
    })
    .await;
}

#[tokio::test]
async fn reconnects_after_the_server_drops_the_connection() {
    let Some(admin_url) = tradestack_testkit::redis() else {
        return;
    };
    as_acl_user(move |url, prefix, user| async move {
        let cache: Arc<dyn Cache> = Arc::new(RedisCache::connect(&url).await.expect("connect"));
        let mine = cache.namespace(&prefix);
        mine.set("k", b"before", None).await.expect("set");

        // Kill every connection of this (unique) user from the server side.
        let mut admin = admin(&admin_url).await;
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(&user)
            .query_async(&mut admin)
            .await
            .expect("CLIENT KILL");
        assert!(killed >= 1, "the cache's connection was killed");

        // A call may fail while the manager notices; it must recover.
        let start = Instant::now();
        loop {
            match mine.get("k").await {
                Ok(v) => {
                    assert_eq!(v, Some(b"before".to_vec()));
                    break;
                }
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    eprintln!("while reconnecting: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("did not reconnect: {e}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn wrong_credentials_fail_clearly_without_leaking_them() {
    let Some(url) = tradestack_testkit::redis() else {
        return;
    };
    let bad = with_credentials(&url, &unique_name("nouser"), "wrong-secret-pw");
    let err = RedisCache::connect(&bad)
        .await
        .expect_err("unknown user must not connect");
    let text = err.to_string();
    assert!(matches!(err, CacheError::Connect { .. }), "{text}");
    assert!(text.contains("redis") && text.contains("***"), "{text}");
    assert!(!text.contains("wrong-secret-pw"), "{text}");
}
