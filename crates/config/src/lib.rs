//! tradestack configuration.
//!
//! One TOML file (`tradestack.toml`, or the path given by `--config` or
//! `TRADESTACK_CONFIG`) plus `TRADESTACK_*` environment overrides. Every key
//! has a default, so an empty file (or none at all) is a working embedded
//! setup. Nested keys are addressed in the environment with `__`:
//! `TRADESTACK_KAFKA__BROKERS` overrides `[kafka] brokers`.
//!
//! Errors name the source (file or variable), the key and the problem on one
//! line, because the CLI prints exactly that line and exits 2.

mod duration;
mod redact;

pub use duration::ConfigDuration;
pub use redact::{redact_url, redacted_toml};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// File name looked for in the working directory when no path is given.
pub const DEFAULT_FILE: &str = "tradestack.toml";
/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "TRADESTACK_CONFIG";
/// Prefix of override variables.
pub const ENV_PREFIX: &str = "TRADESTACK_";

/// Which message bus implementation to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusEngine {
    /// In-process, the default.
    Memory,
    /// Apache Kafka (or a compatible broker).
    Kafka,
}

/// Which state store implementation to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateEngine {
    /// A SQLite file in the data directory, the default.
    Sqlite,
    /// PostgreSQL/TimescaleDB.
    Postgres,
}

/// Which cache implementation to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheEngine {
    /// In-process, the default.
    Memory,
    /// Redis.
    Redis,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Coloured, for people.
    Human,
    /// One JSON object per line, for collectors.
    Json,
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where embedded engines keep their files.
    pub data_dir: PathBuf,
    /// Seed for simulated runs.
    pub seed: u64,
    /// Message bus engine.
    pub bus: BusEngine,
    /// State store engine.
    pub state: StateEngine,
    /// Cache engine.
    pub cache: CacheEngine,
    /// Logging.
    pub log: LogConfig,
    /// Kafka connection, used when `bus = "kafka"`.
    pub kafka: KafkaConfig,
    /// Transactional outbox relay.
    pub outbox: OutboxConfig,
    /// SQLite file, used when `state = "sqlite"`.
    pub sqlite: SqliteConfig,
    /// PostgreSQL connection, used when `state = "postgres"`.
    pub postgres: PostgresConfig,
    /// Redis connection, used when `cache = "redis"`.
    pub redis: RedisConfig,
    /// Service registry location and heartbeat policy.
    pub registry: RegistryConfig,
    /// Metrics and tracing.
    pub telemetry: TelemetryConfig,
    /// Per-service settings, keyed by service name.
    pub services: BTreeMap<String, ServiceConfig>,
    /// The exchange simulator's `[exchange]` table, validated by the exchange
    /// (instruments, fee tiers, accounts, journal); see docs/CONFIGURATION.md.
    pub exchange: toml::Table,
    /// The market-data service's `[marketdata]` table (time-series store,
    /// line-protocol ingest, bars, simulator), validated by that service.
    pub marketdata: toml::Table,
    /// The strategies, `[[strategies]]`: `id`, `account`, `kind` and that
    /// kind's parameters, validated by the strategy engine.
    pub strategies: Vec<toml::Table>,
    /// The risk monitor's `[risk]` table (pre-trade limits and rules).
    pub risk: toml::Table,
    /// The strategy service's `[trading]` table (venue, funding, feed),
    /// validated by that service.
    pub trading: toml::Table,
    /// The custodian's `[custody]` table (settlement cycle, wallets,
    /// reconciliation), validated by that service.
    pub custody: toml::Table,
    /// The chaos coordinator's `[coordinator]` table (service URLs, admin
    /// token, tick), validated by that service.
    pub coordinator: toml::Table,
    /// The audit service's `[audit]` table (grace, runs kept), validated by that service.
    pub audit: toml::Table,
}

/// Logging settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter directive, e.g. `info` or `tradestack=debug,info`.
    pub level: String,
}

/// Kafka settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Prefix for every topic name, so several stacks can share a cluster.
    pub topic_prefix: String,
    /// Consumer group prefix; each subscription adds its own suffix.
    pub group_prefix: String,
    /// Partitions created for new topics.
    pub partitions: u32,
    /// How long the producer keeps retrying one message before reporting failure.
    pub message_timeout: ConfigDuration,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.password`).
    pub properties: BTreeMap<String, String>,
}

/// Outbox relay settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// How often the relay looks for pending messages when idle.
    pub poll_interval: ConfigDuration,
    /// Most messages sent per relay round.
    pub batch: u32,
    /// How long delivered messages are kept so they can be re-sent if the broker loses them.
    pub retain_delivered: ConfigDuration,
}

/// SQLite settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    /// Database file; relative paths are under `data_dir`.
    pub path: PathBuf,
}

/// PostgreSQL settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL; the password, if any, is a secret.
    pub url: String,
}

/// Redis settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Connection URL, with ACL user and password if needed.
    pub url: String,
}

/// Service registry settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Where services and the CLI reach the registry.
    pub url: String,
    /// How often a service heartbeats.
    pub heartbeat_interval: ConfigDuration,
    /// How long an entry lives without a heartbeat.
    pub ttl: ConfigDuration,
    /// Services `tradestack health` requires to be registered and ready.
    pub required: Vec<String>,
}

/// Telemetry settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP endpoint for traces; `OTEL_EXPORTER_OTLP_ENDPOINT` also sets it.
    pub otlp_endpoint: Option<String>,
}

/// Settings of one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// HTTP listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Address other services and clients should use (defaults to `listen`).
    pub advertise: Option<String>,
    /// Whether `tradestack up` starts it.
    pub enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        let mut services = BTreeMap::new();
        services.insert(
            "registry".to_string(),
            ServiceConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8500)),
                ..ServiceConfig::default()
            },
        );
        services.insert(
            "exchange".to_string(),
            ServiceConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8600)),
                ..ServiceConfig::default()
            },
        );
        services.insert(
            "marketdata".to_string(),
            ServiceConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
                ..ServiceConfig::default()
            },
        );
        for (name, port) in [
            ("strategy", 8800),
            ("risk", 8900),
            ("custodian", 8950),
            ("coordinator", 8960),
            ("audit", 8970),
        ] {
            services.insert(
                name.to_string(),
                ServiceConfig {
                    listen: SocketAddr::from(([127, 0, 0, 1], port)),
                    ..ServiceConfig::default()
                },
            );
        }
        Config {
            data_dir: PathBuf::from("data"),
            seed: 42,
            bus: BusEngine::Memory,
            state: StateEngine::Sqlite,
            cache: CacheEngine::Memory,
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            outbox: OutboxConfig::default(),
            sqlite: SqliteConfig::default(),
            postgres: PostgresConfig::default(),
            redis: RedisConfig::default(),
            registry: RegistryConfig::default(),
            telemetry: TelemetryConfig::default(),
            services,
            exchange: toml::Table::new(),
            marketdata: toml::Table::new(),
            strategies: Vec::new(),
            risk: toml::Table::new(),
            trading: toml::Table::new(),
            custody: toml::Table::new(),
            coordinator: toml::Table::new(),
            audit: toml::Table::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: "tradestack.".into(),
            group_prefix: "tradestack".into(),
            partitions: 3,
            message_timeout: ConfigDuration::from_secs(300),
            properties: BTreeMap::new(),
        }
    }
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            poll_interval: ConfigDuration::from_millis(50),
            batch: 500,
            retain_delivered: ConfigDuration::from_secs(3600),
        }
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: PathBuf::from("state.db"),
        }
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: "postgres://postgres@127.0.0.1:5432/tradestack".into(),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: "http://127.0.0.1:8500".into(),
            heartbeat_interval: ConfigDuration::from_secs(5),
            ttl: ConfigDuration::from_secs(15),
            required: vec!["registry".into()],
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            enabled: true,
        }
    }
}

impl Config {
    /// The settings of a service; a service absent from the file gets defaults.
    pub fn service(&self, name: &str) -> ServiceConfig {
        // A file that configures some services must not lose the defaults
        // (well-known ports) of the others.
        self.services
            .get(name)
            .cloned()
            .or_else(|| Config::default().services.remove(name))
            .unwrap_or_default()
    }

    /// The SQLite file, resolved against `data_dir`.
    pub fn sqlite_path(&self) -> PathBuf {
        if self.sqlite.path.is_absolute() {
            self.sqlite.path.clone()
        } else {
            self.data_dir.join(&self.sqlite.path)
        }
    }

    /// The state store URL for the configured engine.
    pub fn state_url(&self) -> String {
        match self.state {
            StateEngine::Sqlite => format!("sqlite://{}", self.sqlite_path().display()),
            StateEngine::Postgres => self.postgres.url.clone(),
        }
    }

    /// The cache URL for the configured engine.
    pub fn cache_url(&self) -> String {
        match self.cache {
            CacheEngine::Memory => "memory://".into(),
            CacheEngine::Redis => self.redis.url.clone(),
        }
    }

    /// The OTLP endpoint: the config key, else the standard OpenTelemetry variable.
    pub fn otlp_endpoint(&self) -> Option<String> {
        self.telemetry
            .otlp_endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .filter(|s| !s.trim().is_empty())
    }

    /// The effective configuration as TOML, with secrets replaced by `***`.
    pub fn to_redacted_toml(&self) -> String {
        match toml::Value::try_from(self) {
            Ok(v) => redacted_toml(v),
            Err(e) => format!("# cannot render configuration: {e}\n"),
        }
    }
}

/// Where a bad value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// Built-in defaults (no file).
    Defaults,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Defaults => f.write_str("defaults"),
        }
    }
}

/// A configuration that cannot be used. Its `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML.
    #[error("{path}:{line}:{column}: invalid TOML: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        reason: String,
    },
    /// A key has a bad value or is unknown.
    #[error("{origin}: key `{key}`: {reason}")]
    Key {
        /// File or environment variable.
        origin: Source,
        /// Dotted key path.
        key: String,
        /// The problem.
        reason: String,
    },
}

/// Loads the configuration: `path` if given, else `$TRADESTACK_CONFIG`, else
/// `./tradestack.toml` if it exists, else defaults; then applies the process
/// environment's `TRADESTACK_*` overrides.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    load_with_env(path, &env)
}

/// [`load`] with an explicit environment, for tests and embedding.
pub fn load_with_env(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let explicit = path.map(Path::to_path_buf).or_else(|| {
        env.iter()
            .find(|(k, _)| k == CONFIG_ENV)
            .map(|(_, v)| PathBuf::from(v))
    });
    let (file, text) = match explicit {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| ConfigError::Read {
                path: p.clone(),
                reason: e.to_string(),
            })?;
            (Some(p), text)
        }
        None => {
            let p = PathBuf::from(DEFAULT_FILE);
            match std::fs::read_to_string(&p) {
                Ok(text) => (Some(p), text),
                Err(_) => (None, String::new()),
            }
        }
    };
    parse(file.as_deref(), &text, env)
}

/// Parses configuration text and applies environment overrides.
pub fn parse(
    file: Option<&Path>,
    text: &str,
    env: &[(String, String)],
) -> Result<Config, ConfigError> {
    let file_source = file.map_or(Source::Defaults, |p| Source::File(p.to_path_buf()));
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        ConfigError::Syntax {
            path: file.map_or_else(|| PathBuf::from(DEFAULT_FILE), Path::to_path_buf),
            line,
            column,
            reason: one_line(e.message()),
        }
    })?;

    // Types of known keys, so "8500" from the environment becomes an integer
    // where the key is an integer and stays a string where it is a string.
    let defaults =
        toml::Value::try_from(Config::default()).unwrap_or(toml::Value::Table(Default::default()));
    let mut overridden: BTreeMap<String, String> = BTreeMap::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if var == CONFIG_ENV || rest.starts_with("TEST_") || rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let key = path.join(".");
        let current = toml::Value::Table(table.clone());
        let hint = lookup(&defaults, &path).or_else(|| lookup(&current, &path));
        let value = env_value(raw, hint);
        set_path(&mut table, &path, value).map_err(|reason| ConfigError::Key {
            origin: Source::Env(var.clone()),
            key: key.clone(),
            reason,
        })?;
        overridden.insert(key, var.clone());
    }

    let de = toml::Value::Table(table);
    serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
        let key = e.path().to_string();
        let reason = one_line(&e.inner().to_string());
        let source = overridden
            .iter()
            .find(|(k, _)| {
                key == **k
                    || key.starts_with(&format!("{k}."))
                    || reason.contains(&format!("`{}`", k.rsplit('.').next().unwrap_or(k)))
            })
            .map_or(file_source.clone(), |(_, v)| Source::Env(v.clone()));
        ConfigError::Key {
            origin: source,
            key,
            reason,
        }
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn lookup<'a>(v: &'a toml::Value, path: &[String]) -> Option<&'a toml::Value> {
    path.iter()
        .try_fold(v, |cur, k| cur.as_table().and_then(|t| t.get(k)))
}

/// Interprets an environment string with the type of the key it overrides.
fn env_value(raw: &str, hint: Option<&toml::Value>) -> toml::Value {
    let parsed = || {
        format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match hint {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_string()),
        Some(toml::Value::Array(_)) => {
            parsed().filter(toml::Value::is_array).unwrap_or_else(|| {
                toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                )
            })
        }
        _ => parsed()
            .filter(|v| !v.is_table())
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a table"))?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse(None, "", &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.bus, BusEngine::Memory);
        assert_eq!(c.state_url(), "sqlite://data/state.db");
    }

    #[test]
    fn file_values_and_env_overrides() {
        let text = r#"
            bus = "kafka"
            [kafka]
            brokers = "k1:9092"
            [services.registry]
            listen = "0.0.0.0:9000"
        "#;
        let c = parse(
            Some(Path::new("t.toml")),
            text,
            &env(&[
                ("TRADESTACK_KAFKA__BROKERS", "k2:9092"),
                ("TRADESTACK_STATE", "postgres"),
                ("TRADESTACK_REGISTRY__TTL", "30s"),
                ("TRADESTACK_KAFKA__PARTITIONS", "6"),
                ("TRADESTACK_REGISTRY__REQUIRED", "registry,exchange"),
                ("TRADESTACK_SERVICES__REGISTRY__LISTEN", "127.0.0.1:0"),
                ("TRADESTACK_TEST_POSTGRES_URL", "ignored"),
                ("TRADESTACK_CONFIG", "ignored"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.bus, BusEngine::Kafka);
        assert_eq!(c.state, StateEngine::Postgres);
        assert_eq!(c.kafka.brokers, "k2:9092");
        assert_eq!(c.kafka.partitions, 6);
        assert_eq!(c.registry.ttl.as_std(), std::time::Duration::from_secs(30));
        assert_eq!(c.registry.required, vec!["registry", "exchange"]);
        assert_eq!(c.service("registry").listen.port(), 0);
    }

    #[test]
    fn numeric_looking_strings_stay_strings() {
        let c = parse(
            None,
            "",
            &env(&[("TRADESTACK_KAFKA__GROUP_PREFIX", "1234")]),
        )
        .unwrap();
        assert_eq!(c.kafka.group_prefix, "1234");
    }

    #[test]
    fn errors_name_file_key_and_problem_on_one_line() {
        let e = parse(Some(Path::new("ts.toml")), "bus = \"carrier-pigeon\"", &[]).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("ts.toml: key `bus`: unknown variant `carrier-pigeon`"),
            "{s}"
        );
        assert!(!s.contains('\n'));

        let e = parse(
            Some(Path::new("ts.toml")),
            "[registry]\nttl = \"soon\"",
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("ts.toml: key `registry.ttl`: "),
            "{e}"
        );

        let e = parse(Some(Path::new("ts.toml")), "[kafka]\nbrokerz = \"x\"", &[]).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("key `kafka.brokerz`: unknown field `brokerz`"),
            "{s}"
        );

        let e = parse(Some(Path::new("ts.toml")), "a = [", &[]).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("ts.toml:1:"), "{s}");
        assert!(!s.contains('\n'), "{s}");
    }

    #[test]
    fn env_errors_name_the_variable() {
        let e = parse(None, "", &env(&[("TRADESTACK_KAFKA__PARTITIONS", "many")])).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with(
                "environment variable TRADESTACK_KAFKA__PARTITIONS: key `kafka.partitions`"
            ),
            "{s}"
        );
        let e = parse(None, "", &env(&[("TRADESTACK_NOPE", "1")])).unwrap_err();
        assert!(e.to_string().contains("TRADESTACK_NOPE"), "{e}");
    }

    #[test]
    fn show_redacts_secrets() {
        let mut c = Config::default();
        c.postgres.url = "postgres://trader:hunter2@db:5432/ts".into();
        c.redis.url = "redis://registry:s3cret@cache:6379/0".into();
        c.kafka
            .properties
            .insert("sasl.password".into(), "pw".into());
        let shown = c.to_redacted_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret") && !shown.contains("\"pw\""),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://trader:***@db:5432/ts"),
            "{shown}"
        );
        // And the redacted text is itself valid configuration.
        parse(None, &shown, &[]).unwrap();
    }

    #[test]
    fn reads_file_from_env_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.toml");
        std::fs::write(&p, "seed = 7\n").unwrap();
        let c = load_with_env(None, &env(&[("TRADESTACK_CONFIG", p.to_str().unwrap())])).unwrap();
        assert_eq!(c.seed, 7);
        let e = load_with_env(Some(&dir.path().join("missing.toml")), &[]).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
