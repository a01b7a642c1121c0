//! [`EventLog`]: a byte-exact record of every dispatched event with a running SHA-256.
//!
//! Record layout (all integers little-endian), one per dispatched event:
//!
//! ```text
//! time: i64 | seq: u64 | target: u64 (u64::MAX = broadcast) | len: u32 | payload: [u8; len]
//! ```
//!
//! The payload is the event encoded with postcard. The hash covers exactly these bytes, so
//! two runs with equal hashes dispatched the same events, at the same times, in the same order.

use serde::Serialize;
use sha2::{Digest, Sha256};
use tradestack_model::UnixNanos;

use crate::error::KernelError;

/// Target value written for events delivered to every component.
pub const BROADCAST_TARGET: u64 = u64::MAX;

/// Running SHA-256 over the event-log records, optionally keeping the bytes too.
#[derive(Clone, Debug)]
pub struct EventLog {
    hasher: Sha256,
    bytes: Option<Vec<u8>>,
    records: u64,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::hash_only()
    }
}

impl EventLog {
    /// A log that keeps only the running hash (constant memory).
    pub fn hash_only() -> Self {
        EventLog {
            hasher: Sha256::new(),
            bytes: None,
            records: 0,
        }
    }

    /// A log that keeps the hash and every record's bytes (for diffing two runs).
    pub fn with_bytes() -> Self {
        EventLog {
            hasher: Sha256::new(),
            bytes: Some(Vec::new()),
            records: 0,
        }
    }

    /// Appends one record; `target` is `None` for a broadcast.
    pub fn record(&mut self, time: UnixNanos, seq: u64, target: Option<u64>, payload: &[u8]) {
        let mut header = [0u8; 28];
        header[0..8].copy_from_slice(&time.0.to_le_bytes());
        header[8..16].copy_from_slice(&seq.to_le_bytes());
        header[16..24].copy_from_slice(&target.unwrap_or(BROADCAST_TARGET).to_le_bytes());
        // Payloads over 4 GiB cannot be produced by a sane event; saturate rather than panic.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        header[24..28].copy_from_slice(&len.to_le_bytes());
        self.hasher.update(header);
        self.hasher.update(payload);
        if let Some(bytes) = &mut self.bytes {
            bytes.extend_from_slice(&header);
            bytes.extend_from_slice(payload);
        }
        self.records += 1;
    }

    /// SHA-256 of all records so far (the log stays open for more records).
    pub fn hash(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    /// [`EventLog::hash`] as lowercase hex.
    pub fn hash_hex(&self) -> String {
        to_hex(&self.hash())
    }

    /// The recorded bytes, if this log keeps them.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.bytes.as_deref()
    }

    /// Number of records appended.
    pub fn records(&self) -> u64 {
        self.records
    }
}

/// Lowercase hex of a byte slice.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Postcard flavor that appends into a borrowed, reused buffer (no allocation once warm).
struct AppendVec<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendVec<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Encodes `event` with postcard into `buf` (cleared first).
pub(crate) fn encode_postcard<E: Serialize>(
    event: &E,
    buf: &mut Vec<u8>,
) -> Result<(), KernelError> {
    buf.clear();
    postcard::serialize_with_flavor(event, AppendVec(buf))?;
    Ok(())
}

/// Encoder chosen when logging is switched on; a plain fn pointer so `E` needs no `Serialize`
/// bound unless a log is actually used.
pub(crate) type EncodeFn<E> = fn(&E, &mut Vec<u8>) -> Result<(), KernelError>;

/// The log plus what is needed to fill it.
pub(crate) struct LogState<E> {
    pub(crate) log: EventLog,
    pub(crate) encode: EncodeFn<E>,
    pub(crate) buf: Vec<u8>,
}

impl<E> LogState<E> {
    /// Encodes and records one dispatched event.
    #[inline]
    pub(crate) fn record(
        &mut self,
        time: UnixNanos,
        seq: u64,
        target: Option<u64>,
        event: &E,
    ) -> Result<(), KernelError> {
        (self.encode)(event, &mut self.buf)?;
        self.log.record(time, seq, target, &self.buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_sha256_of_bytes() {
        let mut log = EventLog::with_bytes();
        log.record(UnixNanos(5), 0, None, b"abc");
        log.record(UnixNanos(6), 1, Some(2), b"");
        let bytes = log.bytes().expect("kept").to_vec();
        assert_eq!(bytes.len(), 28 + 3 + 28);
        let direct: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(log.hash(), direct);
        assert_eq!(log.records(), 2);
    }

    #[test]
    fn hash_only_equals_with_bytes() {
        let mut a = EventLog::hash_only();
        let mut b = EventLog::with_bytes();
        for log in [&mut a, &mut b] {
            log.record(UnixNanos(1), 9, Some(1), b"xy");
        }
        assert_eq!(a.hash(), b.hash());
        assert!(a.bytes().is_none());
    }

    #[test]
    fn empty_log_hash_is_sha256_of_nothing() {
        assert_eq!(
            EventLog::default().hash_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn encode_reuses_buffer() {
        let mut buf = Vec::with_capacity(64);
        encode_postcard(&(1u8, 300u32), &mut buf).expect("encode");
        assert_eq!(buf, vec![1, 0xAC, 0x02]);
        encode_postcard(&7u8, &mut buf).expect("encode");
        assert_eq!(buf, vec![7]);
    }
}
