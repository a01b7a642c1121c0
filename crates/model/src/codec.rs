//! The versioned compact binary encoding used on the bus and in journals.
//!
//! A frame is `MAGIC (2 bytes) | VERSION (1 byte) | postcard body`. postcard is
//! varint-based and field-order dependent, so the version byte is what lets a
//! reader refuse (rather than misread) a frame written by an incompatible build.
//! Bump [`VERSION`] whenever a serialized type changes shape.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Marks a tradestack frame: "TS".
pub const MAGIC: [u8; 2] = *b"TS";
/// The current encoding version.
pub const VERSION: u8 = 1;
const HEADER: usize = 3;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The frame is shorter than its header or lacks the magic bytes.
    #[error("not a tradestack frame")]
    NotAFrame,
    /// The frame was written by an encoding version this build cannot read.
    #[error("unsupported encoding version {found} (this build reads {VERSION})")]
    UnsupportedVersion {
        /// The version found in the frame.
        found: u8,
    },
    /// The body does not match the expected type.
    #[error("malformed body: {0}")]
    Body(#[from] postcard::Error),
}

/// Encodes a value into a new frame.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Appends a frame to `out`, reusing its allocation.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    let body = postcard::to_extend(value, std::mem::take(out))?;
    *out = body;
    Ok(())
}

/// Decodes a frame, checking magic and version first.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, CodecError> {
    if frame.len() < HEADER || frame[..2] != MAGIC {
        return Err(CodecError::NotAFrame);
    }
    if frame[2] != VERSION {
        return Err(CodecError::UnsupportedVersion { found: frame[2] });
    }
    Ok(postcard::from_bytes(&frame[HEADER..])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;
    use crate::fixed::*;
    use crate::time::UnixNanos;

    fn trade() -> Event {
        Event::Trade(Trade {
            id: crate::TradeId(7),
            instrument: "BTC-USDT".into(),
            price: "42000.5".parse().unwrap(),
            quantity: "0.25".parse().unwrap(),
            aggressor: Side::Buy,
            ts: UnixNanos(1_700_000_000_123_456_789),
        })
    }

    #[test]
    fn roundtrip_and_compact() {
        let ev = trade();
        let frame = encode(&ev).unwrap();
        assert_eq!(decode::<Event>(&frame).unwrap(), ev);
        let json = serde_json::to_vec(&ev).unwrap();
        assert!(
            frame.len() * 3 < json.len(),
            "{} vs {}",
            frame.len(),
            json.len()
        );
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let mut frame = encode(&trade()).unwrap();
        frame[2] = 9;
        assert!(matches!(
            decode::<Event>(&frame),
            Err(CodecError::UnsupportedVersion { found: 9 })
        ));
        assert!(matches!(decode::<Event>(b"xx"), Err(CodecError::NotAFrame)));
        assert!(matches!(
            decode::<Event>(b"TS\x01\xff\xff"),
            Err(CodecError::Body(_))
        ));
    }

    #[test]
    fn encode_into_appends() {
        let mut buf = vec![0xAA];
        encode_into(&Amount::from_units(3), &mut buf).unwrap();
        assert_eq!(buf[0], 0xAA);
        assert_eq!(decode::<Amount>(&buf[1..]).unwrap(), Amount::from_units(3));
    }
}
