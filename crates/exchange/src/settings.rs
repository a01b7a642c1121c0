//! Exchange settings: instruments, fee tiers and seeded accounts, read from
//! the `[exchange]` table of `tradestack.toml`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::journal::FsyncPolicy;

use serde::{Deserialize, Serialize};
use tradestack_matching::{FeeRates, StpMode};
use tradestack_model::{AccountId, Amount, AssetCode, Instrument, Price, Quantity, Rate};

/// A fee tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeTier {
    /// Maker rate (negative: rebate).
    pub maker: Rate,
    /// Taker rate.
    pub taker: Rate,
}

impl From<FeeTier> for FeeRates {
    fn from(t: FeeTier) -> Self {
        FeeRates {
            maker: t.maker,
            taker: t.taker,
        }
    }
}

/// An account created at start with balances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSeed {
    /// Account id.
    pub id: AccountId,
    /// Fee tier name.
    #[serde(default = "default_tier")]
    pub tier: String,
    /// Self-trade prevention for its orders unless an order says otherwise.
    #[serde(default)]
    pub stp: StpMode,
    /// Opening balances.
    #[serde(default)]
    pub balances: BTreeMap<AssetCode, Amount>,
    /// API key for the Binance-compatible API (sent as `X-MBX-APIKEY`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Its HMAC secret in plain text: refused unless
    /// `allow_plaintext_secrets` (development only). After loading, it holds
    /// the opened `api_secret_sealed`.
    #[serde(default)]
    pub api_secret: Option<String>,
    /// Its HMAC secret sealed with the secrets key (`v1:...`).
    #[serde(default)]
    pub api_secret_sealed: Option<String>,
}

fn default_tier() -> String {
    "default".into()
}

/// Everything the exchange engine needs to start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeSettings {
    /// Tradable instruments with their rules.
    pub instruments: Vec<Instrument>,
    /// Fee tiers by name; `default` applies to accounts without one.
    pub fee_tiers: BTreeMap<String, FeeTier>,
    /// Market orders trade at most this far past the best price, in bps.
    pub market_band_bps: u32,
    /// Accounts created at start (only into a fresh exchange: once a
    /// journal exists, balances come from it).
    pub accounts: Vec<AccountSeed>,
    /// Durability.
    pub journal: JournalConfig,
    /// Perpetuals: initial and maintenance margin, funding cap, mark band.
    pub margin: crate::margin::MarginSettings,
    /// Refuse unsigned requests to the native API's private endpoints.
    pub require_signatures: bool,
    /// Master key (64 hex digits) that opens `api_secret_sealed`; secret: set
    /// it through `TRADESTACK_EXCHANGE__SECRETS_KEY`.
    pub secrets_key: Option<String>,
    /// Accept `api_secret` in plain text (development and examples only).
    pub allow_plaintext_secrets: bool,
    /// Bearer token for `/admin` (deposits, withdrawals, chaos); unset
    /// disables them. Secret: set it through `TRADESTACK_EXCHANGE__ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// Request-weight limit per minute per API key (or client address).
    pub weight_per_minute: u32,
    /// New orders per ten seconds per API key.
    pub orders_per_10s: u32,
}

/// Where and how the exchange journals its commands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Journal and snapshot directory, relative to `data_dir`.
    pub dir: PathBuf,
    /// `"always"` (fsync each group commit), an interval like `"5ms"`, or `"never"`.
    pub fsync: FsyncPolicy,
    /// A snapshot every this many commands.
    pub snapshot_every: u64,
    /// Most commands per group commit.
    pub batch_max: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            dir: PathBuf::from("exchange"),
            fsync: FsyncPolicy::Always,
            snapshot_every: 10_000,
            batch_max: 256,
        }
    }
}

/// A bad `[exchange]` key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("key `exchange.{key}`: {reason}")]
pub struct SettingsError {
    /// Dotted path under `[exchange]`.
    pub key: String,
    /// The problem.
    pub reason: String,
}

impl ExchangeSettings {
    /// Reads the `[exchange]` table, naming the key at fault.
    pub fn from_table(table: &toml::Table) -> Result<Self, SettingsError> {
        let value = toml::Value::Table(table.clone());
        let mut settings: ExchangeSettings =
            serde_path_to_error::deserialize(value).map_err(|e| SettingsError {
                key: e.path().to_string(),
                reason: e
                    .inner()
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            })?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, ins) in settings.instruments.iter().enumerate() {
            if !seen.insert(ins.id.clone()) {
                return Err(SettingsError {
                    key: format!("instruments[{i}].id"),
                    reason: format!("instrument {} is listed twice", ins.id),
                });
            }
            if ins.tick_size.raw() <= 0 || ins.lot_size.raw() <= 0 {
                return Err(SettingsError {
                    key: format!("instruments[{i}]"),
                    reason: "tick_size and lot_size must be positive".into(),
                });
            }
        }
        if !settings.fee_tiers.contains_key("default") {
            return Err(SettingsError {
                key: "fee_tiers".into(),
                reason: "a tier named \"default\" is required".into(),
            });
        }
        let key = settings
            .secrets_key
            .as_deref()
            .map(crate::secrets::parse_key)
            .transpose()
            .map_err(|e| SettingsError {
                key: "secrets_key".into(),
                reason: e.to_string(),
            })?;
        let plaintext_ok = settings.allow_plaintext_secrets;
        for (i, a) in settings.accounts.iter_mut().enumerate() {
            let err = |field: &str, reason: String| SettingsError {
                key: format!("accounts[{i}].{field}"),
                reason,
            };
            match (&a.api_key, &a.api_secret, &a.api_secret_sealed) {
                (None, None, None) => {}
                (Some(_), Some(_), None) if plaintext_ok => {}
                (Some(_), Some(_), None) => {
                    return Err(err(
                        "api_secret",
                        "plain-text secrets are refused: seal it with `tradestack exchange seal-secret` and set api_secret_sealed (allow_plaintext_secrets = true is for development only)".into(),
                    ));
                }
                (Some(_), None, Some(sealed)) => {
                    let k = key.as_ref().ok_or_else(|| {
                        err("api_secret_sealed", "set exchange.secrets_key (TRADESTACK_EXCHANGE__SECRETS_KEY) to open it".into())
                    })?;
                    let opened = crate::secrets::open(k, sealed)
                        .map_err(|e| err("api_secret_sealed", e.to_string()))?;
                    a.api_secret = Some(opened);
                }
                _ => {
                    return Err(err(
                        "api_key",
                        "api_key needs exactly one of api_secret_sealed or api_secret".into(),
                    ));
                }
            }
            if !settings.fee_tiers.contains_key(&a.tier) {
                return Err(SettingsError {
                    key: format!("accounts[{i}].tier"),
                    reason: format!("no fee tier named {:?}", a.tier),
                });
            }
        }
        Ok(settings)
    }
}

fn p(s: &str) -> Price {
    s.parse().expect("literal price")
}

fn q(s: &str) -> Quantity {
    s.parse().expect("literal quantity")
}

fn spot(id: &str, tick: &str, lot: &str, min_notional: &str) -> Instrument {
    let (base, quote) = id.split_once('-').expect("BASE-QUOTE");
    let mut i = Instrument::spot(id, base, quote, p(tick), q(lot));
    i.min_notional = min_notional.parse().expect("literal amount");
    i.max_qty = q("9000000");
    i
}

fn perpetual(
    id: &str,
    base: &str,
    quote: &str,
    tick: &str,
    lot: &str,
    min_notional: &str,
) -> Instrument {
    let mut i = Instrument::spot(id, base, quote, p(tick), q(lot));
    i.kind = tradestack_model::InstrumentKind::Perpetual {
        contract_size: Quantity::ONE,
        settle: AssetCode::new(quote),
    };
    i.min_notional = min_notional.parse().expect("literal amount");
    i.max_qty = q("1000");
    i
}

impl Default for ExchangeSettings {
    /// Spot pairs with tick and lot sizes like Binance's (Kraken's for
    /// USDT-USD), a default tier of 2 bp maker and 5 bp taker, and no accounts.
    fn default() -> Self {
        let mut tiers = BTreeMap::new();
        tiers.insert(
            "default".into(),
            FeeTier {
                maker: Rate::from_raw(20_000),
                taker: Rate::from_raw(50_000),
            },
        );
        tiers.insert(
            "vip".into(),
            FeeTier {
                maker: Rate::from_raw(-5_000),
                taker: Rate::from_raw(20_000),
            },
        );
        ExchangeSettings {
            instruments: vec![
                spot("BTC-USDT", "0.01", "0.00001", "5"),
                spot("ETH-USDT", "0.01", "0.0001", "5"),
                spot("SOL-USDT", "0.01", "0.001", "5"),
                spot("USDT-USD", "0.0001", "0.01", "1"),
                spot("USDC-USDT", "0.0001", "1", "5"),
                perpetual("BTC-USDT-PERP", "BTC", "USDT", "0.1", "0.001", "5"),
            ],
            fee_tiers: tiers,
            market_band_bps: 500,
            accounts: Vec::new(),
            journal: JournalConfig::default(),
            margin: crate::margin::MarginSettings::default(),
            admin_token: None,
            require_signatures: true,
            secrets_key: None,
            allow_plaintext_secrets: false,
            weight_per_minute: 6_000,
            orders_per_10s: 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_required_unless_turned_off() {
        let default = ExchangeSettings::from_table(&toml::Table::new()).unwrap();
        assert!(default.require_signatures);
        let table: toml::Table = toml::from_str("require_signatures = false").unwrap();
        assert!(
            !ExchangeSettings::from_table(&table)
                .unwrap()
                .require_signatures
        );
    }
}
