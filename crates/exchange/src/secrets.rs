//! API secrets at rest: sealed with ChaCha20-Poly1305 under a master key
//! that comes from the environment (`TRADESTACK_EXCHANGE__SECRETS_KEY`), so
//! configuration files and backups never hold them in plain text. The
//! exchange opens them once at start; HMAC verification needs the secret
//! itself in memory.
//!
//! A sealed secret reads `v1:<nonce hex>:<ciphertext hex>`.
//! `tradestack exchange new-key` makes a master key and
//! `tradestack exchange seal-secret` seals a secret read from stdin.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// A secret could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The master key is not 64 hex digits.
    #[error(
        "the secrets key must be 64 hex digits (32 bytes); make one with `tradestack exchange new-key`"
    )]
    BadKey,
    /// The sealed text is not `v1:<hex>:<hex>`.
    #[error("not a sealed secret (expected v1:<nonce hex>:<ciphertext hex>)")]
    Malformed,
    /// Wrong key, or the text was altered.
    #[error("cannot open the sealed secret: wrong secrets key, or the text was altered")]
    Open,
}

/// A master key from 64 hex digits.
pub fn parse_key(hex_key: &str) -> Result<[u8; 32], SecretError> {
    let bytes = hex::decode(hex_key.trim()).map_err(|_| SecretError::BadKey)?;
    bytes.try_into().map_err(|_| SecretError::BadKey)
}

/// A new random master key, as hex.
pub fn new_key() -> String {
    hex::encode(ChaCha20Poly1305::generate_key(&mut OsRng))
}

/// Seals `secret` under `key`.
pub fn seal(key: &[u8; 32], secret: &str) -> String {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(&nonce, secret.as_bytes())
        .expect("encrypting in memory cannot fail");
    format!("v1:{}:{}", hex::encode(nonce), hex::encode(sealed))
}

/// Opens a sealed secret.
pub fn open(key: &[u8; 32], sealed: &str) -> Result<String, SecretError> {
    let mut parts = sealed.trim().split(':');
    let (Some("v1"), Some(nonce), Some(body), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SecretError::Malformed);
    };
    let nonce = hex::decode(nonce).map_err(|_| SecretError::Malformed)?;
    let body = hex::decode(body).map_err(|_| SecretError::Malformed)?;
    if nonce.len() != 12 {
        return Err(SecretError::Malformed);
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let plain = cipher
        .decrypt(Nonce::from_slice(&nonce), body.as_ref())
        .map_err(|_| SecretError::Open)?;
    String::from_utf8(plain).map_err(|_| SecretError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_and_refuse_tampering() {
        let key = parse_key(&new_key()).unwrap();
        let sealed = seal(&key, "s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(open(&key, &sealed).unwrap(), "s3cret");
        let other = parse_key(&new_key()).unwrap();
        assert_eq!(open(&other, &sealed), Err(SecretError::Open));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('0') { '1' } else { '0' });
        assert_eq!(open(&key, &tampered), Err(SecretError::Open));
        assert_eq!(open(&key, "plain"), Err(SecretError::Malformed));
        assert_eq!(parse_key("abc"), Err(SecretError::BadKey));
    }
}
