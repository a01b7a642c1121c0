//! Alert delivery: every fired and resolved alert, POSTed to Alertmanager
//! (API v2) and Telegram by one background task per target, with retries.
//!
//! [`Notifier::send`] never blocks the monitor: each target has a bounded
//! queue, and a change that finds it full is dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tradestack_config::ConfigDuration;
use tradestack_model::{Alert, Severity, UnixNanos};

use crate::alerts::AlertChange;

/// Changes each target's queue holds before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 10_000;
/// The Telegram Bot API, unless `base_url` says otherwise.
pub const DEFAULT_TELEGRAM_URL: &str = "https://api.telegram.org";
/// The environment variable holding the bot token, unless `token_env` says otherwise.
// Not `TRADESTACK_*`: that prefix is reserved for configuration keys, and an
// unknown one stops the binary.
pub const DEFAULT_TOKEN_ENV: &str = "TELEGRAM_BOT_TOKEN";

// Telegram refuses longer messages with a 400, which is never retried.
const TELEGRAM_MAX_CHARS: usize = 4096;
// Enough of an error body to see why, not enough to flood the log.
const BODY_SNIPPET_CHARS: usize = 300;

/// `[risk.delivery]`: where alerts go. Nothing by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// `[[risk.delivery.alertmanager]]` targets.
    pub alertmanager: Vec<AlertmanagerTarget>,
    /// `[[risk.delivery.telegram]]` targets.
    pub telegram: Vec<TelegramTarget>,
    /// `[risk.delivery.retry]`, shared by every target.
    pub retry: RetryPolicy,
}

/// One Alertmanager.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerTarget {
    /// Base URL, e.g. `http://127.0.0.1:9093`; alerts go to `{url}/api/v2/alerts`.
    pub url: String,
    /// Alerts below this severity are not sent.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// `generatorURL` of every alert (e.g. the risk dashboard), if set.
    #[serde(default)]
    pub generator_url: Option<String>,
}

/// One Telegram chat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramTarget {
    /// Bot API base URL.
    #[serde(default = "default_telegram_url")]
    pub base_url: String,
    /// The chat (or channel, `@name`) to post to.
    pub chat_id: String,
    /// Name of the environment variable holding the bot token (never the token itself).
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// Alerts below this severity are not sent.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
}

/// `[risk.delivery.retry]`: exponential backoff for failed deliveries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Tries per alert, the first included.
    pub attempts: u32,
    /// Wait before the first retry; it doubles each time.
    pub initial_backoff: ConfigDuration,
    /// Longest wait between tries (also caps Telegram's `retry_after`).
    pub max_backoff: ConfigDuration,
    /// Time limit of one request, connect to last body byte.
    pub timeout: ConfigDuration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            initial_backoff: ConfigDuration::from_millis(200),
            max_backoff: ConfigDuration::from_secs(10),
            timeout: ConfigDuration::from_secs(5),
        }
    }
}

fn default_min_severity() -> Severity {
    Severity::Warning
}

fn default_telegram_url() -> String {
    DEFAULT_TELEGRAM_URL.to_string()
}

fn default_token_env() -> String {
    DEFAULT_TOKEN_ENV.to_string()
}

impl DeliveryConfig {
    /// True when no target is configured.
    pub fn is_empty(&self) -> bool {
        self.alertmanager.is_empty() && self.telegram.is_empty()
    }

    /// Checks URLs, names and the retry policy; the error names the key.
    /// The token variables are checked by [`Notifier::start`], at run time.
    pub fn validate(&self) -> Result<(), String> {
        for (i, t) in self.alertmanager.iter().enumerate() {
            let key = format!("risk.delivery.alertmanager[{i}]");
            check_url(&t.url).map_err(|e| format!("{key}.url: {e}"))?;
            if let Some(g) = &t.generator_url {
                check_url(g).map_err(|e| format!("{key}.generator_url: {e}"))?;
            }
        }
        for (i, t) in self.telegram.iter().enumerate() {
            let key = format!("risk.delivery.telegram[{i}]");
            check_url(&t.base_url).map_err(|e| format!("{key}.base_url: {e}"))?;
            if t.chat_id.trim().is_empty() {
                return Err(format!("{key}.chat_id: must not be empty"));
            }
            let name_ok = !t.token_env.is_empty()
                && t.token_env
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok {
                // The value is not echoed: it may be a token pasted by mistake.
                return Err(format!(
                    "{key}.token_env: not an environment variable name (letters, digits, _); \
                     it names the variable holding the token, not the token"
                ));
            }
        }
        let r = &self.retry;
        if r.attempts == 0 {
            return Err("risk.delivery.retry.attempts: must be at least 1".into());
        }
        if r.timeout.as_std().is_zero() {
            return Err("risk.delivery.retry.timeout: must be more than 0".into());
        }
        if r.initial_backoff > r.max_backoff {
            return Err("risk.delivery.retry.initial_backoff: must not exceed max_backoff".into());
        }
        Ok(())
    }
}

/// An http(s) URL with a host and no query or fragment.
fn check_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{url:?}: the scheme must be http or https"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?}: no host"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{url:?}: a base URL takes no query or fragment"));
    }
    Ok(())
}

/// Why [`Notifier::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A bad `[risk.delivery]` key; the message names it.
    #[error("{0}")]
    Config(String),
    /// A Telegram target's token variable is unset, empty or unusable.
    #[error(
        "risk.delivery.telegram[{index}].token_env: environment variable {var} {problem} \
         (it must hold the Telegram bot token)"
    )]
    Token {
        /// Which `[[risk.delivery.telegram]]` entry.
        index: usize,
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The HTTP client could not be built.
    #[error("risk.delivery: HTTP client: {0}")]
    Client(String),
    /// Called outside a tokio runtime.
    #[error("risk.delivery: the notifier must be started inside a tokio runtime")]
    NoRuntime,
}

/// Where a delivery goes, as the `receiver` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Receiver {
    /// Prometheus Alertmanager.
    Alertmanager,
    /// A Telegram chat.
    Telegram,
}

impl Receiver {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Receiver::Alertmanager => "alertmanager",
            Receiver::Telegram => "telegram",
        }
    }
}

/// Labels of `risk_alert_deliveries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// alertmanager or telegram.
    pub receiver: String,
    /// delivered, failed or dropped.
    pub outcome: String,
}

/// Labels of `risk_alert_delivery_retries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    /// alertmanager or telegram.
    pub receiver: String,
}

/// Delivery counts of one receiver kind, summed over its targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Accepted by the receiver (2xx).
    pub delivered: u64,
    /// Refused, or out of attempts.
    pub failed: u64,
    /// Never tried: the queue was full.
    pub dropped: u64,
    /// Tries after the first.
    pub retries: u64,
}

/// The counters; kept even without a registry so [`Notifier::stats`] works.
#[derive(Clone, Default)]
struct Counters {
    deliveries: Family<DeliveryLabels, Counter>,
    retries: Family<ReceiverLabels, Counter>,
}

impl Counters {
    fn outcome(&self, receiver: Receiver, outcome: &str) -> Counter {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                receiver: receiver.as_str().to_string(),
                outcome: outcome.to_string(),
            })
            .clone()
    }

    fn retries(&self, receiver: Receiver) -> Counter {
        self.retries
            .get_or_create(&ReceiverLabels {
                receiver: receiver.as_str().to_string(),
            })
            .clone()
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2024-02-29T12:34:56.789Z`.
pub fn rfc3339_millis(t: UnixNanos) -> String {
    t.to_rfc3339_millis()
}

/// The severity as written in configuration and labels.
pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// One alert of an Alertmanager API v2 `POST /api/v2/alerts` body.
/// `endsAt` is set only once resolved; Alertmanager matches the resolution
/// to the firing alert by its labels.
pub fn alertmanager_alert(change: &AlertChange, generator_url: Option<&str>) -> Value {
    let a = change.alert();
    let mut v = json!({
        "labels": {
            "alertname": a.rule,
            "rule": a.rule,
            "severity": severity_name(a.severity),
            "subject": a.subject,
            "service": "risk",
        },
        "annotations": {
            "summary": a.message,
            "value": a.value.to_string(),
            "threshold": a.threshold.to_string(),
        },
        "startsAt": rfc3339_millis(a.first_seen),
    });
    if let AlertChange::Resolved(_) = change {
        v["endsAt"] = Value::String(rfc3339_millis(a.last_seen));
    }
    if let Some(g) = generator_url {
        v["generatorURL"] = Value::String(g.to_string());
    }
    v
}

/// The whole `POST /api/v2/alerts` body for one change: a one-element array.
pub fn alertmanager_payload(change: &AlertChange, generator_url: Option<&str>) -> Value {
    Value::Array(vec![alertmanager_alert(change, generator_url)])
}

/// The Telegram message, plain text, e.g.
/// `🔴 FIRING [critical] drawdown on strat-mm: … (value 1200 / threshold 1000)`.
pub fn telegram_text(change: &AlertChange) -> String {
    let a: &Alert = change.alert();
    let head = match change {
        AlertChange::Fired(_) => match a.severity {
            Severity::Critical => "🔴 FIRING",
            Severity::Warning => "🟠 FIRING",
            Severity::Info => "🔵 FIRING",
        },
        AlertChange::Resolved(_) => "✅ RESOLVED",
    };
    let text = format!(
        "{head} [{}] {} on {}: {} (value {} / threshold {})",
        severity_name(a.severity),
        a.rule,
        a.subject,
        a.message,
        a.value,
        a.threshold
    );
    if text.chars().count() <= TELEGRAM_MAX_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(TELEGRAM_MAX_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The Telegram `sendMessage` body. No `parse_mode`, so nothing needs escaping.
pub fn telegram_payload(chat_id: &str, change: &AlertChange) -> Value {
    json!({ "chat_id": chat_id, "text": telegram_text(change) })
}

/// The token, kept out of `Debug` and replaced wherever it could surface.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Secret {
    fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "<redacted>")
        }
    }
}

// No Debug: the Telegram URL holds the token.
enum Endpoint {
    Alertmanager {
        url: String,
        generator_url: Option<String>,
    },
    Telegram {
        // Holds the token: never logged, never in an error.
        url: String,
        chat_id: String,
        token: Secret,
    },
}

impl Endpoint {
    fn receiver(&self) -> Receiver {
        match self {
            Endpoint::Alertmanager { .. } => Receiver::Alertmanager,
            Endpoint::Telegram { .. } => Receiver::Telegram,
        }
    }

    fn url(&self) -> &str {
        match self {
            Endpoint::Alertmanager { url, .. } | Endpoint::Telegram { url, .. } => url,
        }
    }

    fn body(&self, change: &AlertChange) -> Value {
        match self {
            Endpoint::Alertmanager { generator_url, .. } => {
                alertmanager_payload(change, generator_url.as_deref())
            }
            Endpoint::Telegram { chat_id, .. } => telegram_payload(chat_id, change),
        }
    }

    fn redact(&self, text: &str) -> String {
        match self {
            Endpoint::Telegram { token, .. } => token.redact(text),
            Endpoint::Alertmanager { .. } => text.to_string(),
        }
    }
}

/// What one try came to.
enum Attempt {
    Delivered,
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Fail(String),
}

struct Target {
    min_severity: Severity,
    receiver: Receiver,
    tx: mpsc::Sender<AlertChange>,
}

/// Sends alert changes to every configured target in the background.
/// Cloning shares the queues.
#[derive(Clone)]
pub struct Notifier {
    targets: Arc<[Target]>,
    counters: Counters,
    pending: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("targets", &self.targets.len())
            .field("pending", &self.pending())
            .finish()
    }
}

impl Notifier {
    /// Validates `config`, reads the Telegram tokens from their variables
    /// (an unset one is an error naming it) and starts one task per target.
    /// Must run inside a tokio runtime. `metrics` gets the delivery counters.
    pub fn start(
        config: &DeliveryConfig,
        metrics: Option<&tradestack_telemetry::Metrics>,
    ) -> Result<Notifier, DeliveryError> {
        config.validate().map_err(DeliveryError::Config)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| DeliveryError::NoRuntime)?;
        // Read every token before spawning anything: fail fast, all or nothing.
        let mut endpoints = Vec::new();
        for t in &config.alertmanager {
            endpoints.push((
                t.min_severity,
                tradestack_config::redact_url(&t.url),
                Endpoint::Alertmanager {
                    url: format!("{}/api/v2/alerts", t.url.trim_end_matches('/')),
                    generator_url: t.generator_url.clone(),
                },
            ));
        }
        for (index, t) in config.telegram.iter().enumerate() {
            let token_error = |problem| DeliveryError::Token {
                index,
                var: t.token_env.clone(),
                problem,
            };
            let token = match std::env::var(&t.token_env) {
                Ok(v) => v.trim().to_string(),
                Err(std::env::VarError::NotPresent) => return Err(token_error("is not set")),
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(token_error("is not valid UTF-8"));
                }
            };
            if token.is_empty() {
                return Err(token_error("is empty"));
            }
            // The token is a path segment: only what Telegram issues (digits, ':', base64url).
            if !token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'))
            {
                return Err(token_error("holds characters a bot token never has"));
            }
            endpoints.push((
                t.min_severity,
                format!(
                    "{} chat {}",
                    tradestack_config::redact_url(&t.base_url),
                    t.chat_id
                ),
                Endpoint::Telegram {
                    url: format!(
                        "{}/bot{token}/sendMessage",
                        t.base_url.trim_end_matches('/')
                    ),
                    chat_id: t.chat_id.clone(),
                    token: Secret(token),
                },
            ));
        }

        let client = reqwest::Client::builder()
            .timeout(config.retry.timeout.as_std())
            // A redirect would carry the token elsewhere, and turns POST into GET.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DeliveryError::Client(e.to_string()))?;
        let counters = Counters::default();
        if let Some(m) = metrics {
            m.register(
                "risk_alert_deliveries",
                "Alert changes sent to receivers, by outcome (delivered, failed, dropped)",
                counters.deliveries.clone(),
            );
            m.register(
                "risk_alert_delivery_retries",
                "Delivery tries after the first, by receiver",
                counters.retries.clone(),
            );
        }
        let pending = Arc::new(AtomicUsize::new(0));
        let mut targets = Vec::new();
        for (i, (min_severity, name, endpoint)) in endpoints.into_iter().enumerate() {
            let receiver = endpoint.receiver();
            // Every outcome starts at 0, so dashboards and rates see the series from the start.
            for outcome in ["delivered", "failed", "dropped"] {
                counters.outcome(receiver, outcome);
            }
            counters.retries(receiver);
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            let worker = Worker {
                name,
                endpoint,
                client: client.clone(),
                retry: config.retry.clone(),
                counters: counters.clone(),
                pending: pending.clone(),
                rng: seed(i as u64),
            };
            runtime.spawn(worker.run(rx));
            targets.push(Target {
                min_severity,
                receiver,
                tx,
            });
        }
        Ok(Notifier {
            targets: targets.into(),
            counters,
            pending,
        })
    }

    /// Queues `change` for every target whose `min_severity` it meets, without
    /// waiting; returns how many targets took it. A full queue drops it (counted).
    pub fn send(&self, change: &AlertChange) -> usize {
        self.queue(change, None)
    }

    /// Sends the still-firing `active` alerts to Alertmanager again: it
    /// resolves an alert it has not heard of for its `resolve_timeout`
    /// (5 minutes by default), so a long condition must be repeated. Chat
    /// receivers hear of each change once.
    pub fn refresh(&self, active: &[Alert]) -> usize {
        active
            .iter()
            .filter(|a| !a.resolved)
            .map(|a| self.queue(&AlertChange::Fired(a.clone()), Some(Receiver::Alertmanager)))
            .sum()
    }

    fn queue(&self, change: &AlertChange, only: Option<Receiver>) -> usize {
        let severity = change.alert().severity;
        let mut queued = 0;
        for t in self
            .targets
            .iter()
            .filter(|t| severity >= t.min_severity && only.is_none_or(|r| r == t.receiver))
        {
            self.pending.fetch_add(1, Ordering::SeqCst);
            match t.tx.try_send(change.clone()) {
                Ok(()) => queued += 1,
                Err(e) => {
                    self.pending.fetch_sub(1, Ordering::SeqCst);
                    self.counters.outcome(t.receiver, "dropped").inc();
                    let a = change.alert();
                    tracing::warn!(
                        receiver = t.receiver.as_str(),
                        rule = %a.rule,
                        subject = %a.subject,
                        reason = if matches!(e, mpsc::error::TrySendError::Full(_)) {
                            "queue full"
                        } else {
                            "delivery task gone"
                        },
                        "alert change dropped"
                    );
                }
            }
        }
        queued
    }

    /// Changes queued or being delivered, over all targets.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Waits until every queued change is delivered or given up on, at most
    /// `timeout`; true if the queues drained.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Counts so far for one receiver kind.
    pub fn stats(&self, receiver: Receiver) -> DeliveryStats {
        let c = &self.counters;
        DeliveryStats {
            delivered: c.outcome(receiver, "delivered").get(),
            failed: c.outcome(receiver, "failed").get(),
            dropped: c.outcome(receiver, "dropped").get(),
            retries: c.retries(receiver).get(),
        }
    }
}

/// A jitter seed from the clock: this is I/O edge code, not the deterministic core.
fn seed(salt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}

/// One target's task: takes changes off its queue in order, one at a time.
struct Worker {
    name: String,
    endpoint: Endpoint,
    client: reqwest::Client,
    retry: RetryPolicy,
    counters: Counters,
    pending: Arc<AtomicUsize>,
    rng: u64,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<AlertChange>) {
        // Ends once every Notifier clone is dropped and the queue is drained.
        while let Some(change) = rx.recv().await {
            let delivered = self.deliver(&change).await;
            let outcome = if delivered { "delivered" } else { "failed" };
            self.counters
                .outcome(self.endpoint.receiver(), outcome)
                .inc();
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Tries until delivered, refused, or out of attempts.
    async fn deliver(&mut self, change: &AlertChange) -> bool {
        let receiver = self.endpoint.receiver();
        let alert = change.alert();
        let body = self.endpoint.body(change);
        let max = self.retry.max_backoff.as_std();
        let mut backoff = self.retry.initial_backoff.as_std();
        for attempt in 1..=self.retry.attempts {
            let (reason, after) = match self.attempt(&body).await {
                Attempt::Delivered => return true,
                Attempt::Fail(reason) => {
                    tracing::warn!(
                        receiver = receiver.as_str(),
                        target = %self.name,
                        rule = %alert.rule,
                        subject = %alert.subject,
                        attempt,
                        error = %reason,
                        "alert not delivered: refused, not retried"
                    );
                    return false;
                }
                Attempt::Retry { reason, after } => (reason, after),
            };
            if attempt == self.retry.attempts {
                tracing::warn!(
                    receiver = receiver.as_str(),
                    target = %self.name,
                    rule = %alert.rule,
                    subject = %alert.subject,
                    attempts = attempt,
                    error = %reason,
                    "alert not delivered: out of attempts"
                );
                return false;
            }
            let wait = after.map_or_else(|| self.jitter(backoff), |a| a.min(max));
            tracing::debug!(
                receiver = receiver.as_str(),
                target = %self.name,
                attempt,
                error = %reason,
                wait_ms = wait.as_millis() as u64,
                "alert delivery failed; retrying"
            );
            self.counters.retries(receiver).inc();
            tokio::time::sleep(wait).await;
            backoff = backoff.saturating_mul(2).min(max);
        }
        false
    }

    /// 90–100% of `backoff`, so targets failing together spread out.
    fn jitter(&mut self, backoff: Duration) -> Duration {
        // xorshift64: plenty for spreading retries.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let permille = 900 + (self.rng % 101) as u32;
        backoff * permille / 1000
    }

    async fn attempt(&self, body: &Value) -> Attempt {
        let sent = self
            .client
            .post(self.endpoint.url())
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let permanent = e.is_builder();
                let reason = self.endpoint.redact(&error_chain(&e.without_url()));
                return if permanent {
                    Attempt::Fail(reason)
                } else {
                    Attempt::Retry {
                        reason,
                        after: None,
                    }
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered;
        }
        let header_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok());
        let text = response.text().await.unwrap_or_default();
        // Telegram: {"ok":false,"error_code":429,"parameters":{"retry_after":N}}.
        let body_after = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.pointer("/parameters/retry_after").and_then(Value::as_u64));
        let snippet: String = text.chars().take(BODY_SNIPPET_CHARS).collect();
        let reason = self
            .endpoint
            .redact(&format!("HTTP {status}: {}", snippet.trim()));
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Attempt::Retry {
                reason,
                after: body_after.or(header_after).map(Duration::from_secs),
            }
        } else if status.is_server_error() {
            Attempt::Retry {
                reason,
                after: None,
            }
        } else {
            Attempt::Fail(reason)
        }
    }
}

/// The error and its causes on one line (reqwest's own message is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(resolved: bool) -> Alert {
        Alert {
            rule: "drawdown".into(),
            severity: Severity::Critical,
            subject: "strat-mm".into(),
            message: "drawdown 1200 USD over 1000".into(),
            value: "1200".parse().unwrap(),
            threshold: "1000".parse().unwrap(),
            first_seen: UnixNanos(1_709_210_096_123_456_789),
            last_seen: UnixNanos(1_709_210_156_000_000_000),
            resolved,
        }
    }

    #[test]
    fn rfc3339_has_milliseconds() {
        assert_eq!(rfc3339_millis(UnixNanos(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(UnixNanos(1_709_210_096_123_456_789)),
            "2024-02-29T12:34:56.123Z"
        );
        assert_eq!(rfc3339_millis(UnixNanos(-1)), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn alertmanager_payload_fired_and_resolved() {
        let fired = alertmanager_payload(&AlertChange::Fired(alert(false)), None);
        assert_eq!(
            fired,
            json!([{
                "labels": {
                    "alertname": "drawdown",
                    "rule": "drawdown",
                    "severity": "critical",
                    "subject": "strat-mm",
                    "service": "risk",
                },
                "annotations": {
                    "summary": "drawdown 1200 USD over 1000",
                    "value": "1200",
                    "threshold": "1000",
                },
                "startsAt": "2024-02-29T12:34:56.123Z",
            }])
        );
        let resolved = alertmanager_payload(
            &AlertChange::Resolved(alert(true)),
            Some("http://risk.local/alerts"),
        );
        assert_eq!(resolved[0]["endsAt"], "2024-02-29T12:35:56.000Z");
        assert_eq!(resolved[0]["generatorURL"], "http://risk.local/alerts");
        assert_eq!(resolved[0]["labels"], fired[0]["labels"]);
    }

    #[test]
    fn telegram_text_is_plain() {
        assert_eq!(
            telegram_text(&AlertChange::Fired(alert(false))),
            "🔴 FIRING [critical] drawdown on strat-mm: drawdown 1200 USD over 1000 \
             (value 1200 / threshold 1000)"
        );
        assert_eq!(
            telegram_payload("-100", &AlertChange::Resolved(alert(true))),
            json!({
                "chat_id": "-100",
                "text": "✅ RESOLVED [critical] drawdown on strat-mm: drawdown 1200 USD over 1000 \
                         (value 1200 / threshold 1000)",
            })
        );
        let mut long = alert(false);
        long.message = "x".repeat(10_000);
        let text = telegram_text(&AlertChange::Fired(long));
        assert_eq!(text.chars().count(), TELEGRAM_MAX_CHARS);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: DeliveryConfig = toml::from_str(
            r#"
            [[alertmanager]]
            url = "http://127.0.0.1:9093"
            [[telegram]]
            chat_id = "-100123"
            "#,
        )
        .unwrap();
        assert_eq!(c.alertmanager[0].min_severity, Severity::Warning);
        assert_eq!(c.telegram[0].base_url, DEFAULT_TELEGRAM_URL);
        assert_eq!(c.telegram[0].token_env, DEFAULT_TOKEN_ENV);
        assert_eq!(c.retry, RetryPolicy::default());
        assert_eq!(c.validate(), Ok(()));
        assert!(DeliveryConfig::default().is_empty());
        assert_eq!(DeliveryConfig::default().validate(), Ok(()));

        let mut bad = c.clone();
        bad.alertmanager[0].url = "127.0.0.1:9093".into();
        let e = bad.validate().unwrap_err();
        assert!(e.starts_with("risk.delivery.alertmanager[0].url: "), "{e}");
        let mut bad = c.clone();
        bad.telegram[0].base_url = "ftp://x".into();
        let e = bad.validate().unwrap_err();
        assert!(e.starts_with("risk.delivery.telegram[0].base_url: "), "{e}");
        let mut bad = c.clone();
        bad.telegram[0].token_env = "123456:ABC-secret".into();
        let e = bad.validate().unwrap_err();
        assert!(
            e.starts_with("risk.delivery.telegram[0].token_env: "),
            "{e}"
        );
        let mut bad = c.clone();
        bad.retry.attempts = 0;
        assert!(
            bad.validate()
                .unwrap_err()
                .starts_with("risk.delivery.retry.attempts")
        );

        let unknown =
            toml::from_str::<DeliveryConfig>("[[telegram]]\nchat_id = \"1\"\ntoken = \"x\"");
        assert!(unknown.is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret("123:abc".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(
            s.redact("error sending to http://h/bot123:abc/sendMessage"),
            "error sending to http://h/bot<redacted>/sendMessage"
        );
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        let mut w = Worker {
            name: String::new(),
            endpoint: Endpoint::Alertmanager {
                url: String::new(),
                generator_url: None,
            },
            client: reqwest::Client::new(),
            retry: RetryPolicy::default(),
            counters: Counters::default(),
            pending: Arc::default(),
            rng: seed(7),
        };
        for _ in 0..1000 {
            let d = w.jitter(Duration::from_millis(1000));
            assert!((Duration::from_millis(900)..=Duration::from_millis(1000)).contains(&d));
        }
    }
}
