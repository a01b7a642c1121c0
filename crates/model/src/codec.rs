//! The versioned compact binary encoding used on the bus and in journals.
//!
//! A frame is `MAGIC (2 bytes) | VERSION (1 byte) | postcard body`. postcard is
//! varint-based and field-order dependent, so the version byte is what lets a
//! reader refuse (rather than misread) a frame written by an incompatible build.
//! Bump [`VERSION`] whenever a serialized type changes shape.
//!
//! postcard cannot carry every serde form: internally tagged enums,
//! flattened fields and skipped fields need a self-describing format. What
//! goes to another process is therefore encoded by [`encode_message`], which
//! falls back to a JSON body (flagged in the version byte, [`JSON_BODY`])
//! when the compact one does not round-trip; [`decode`] reads both.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Marks a tradestack frame: "TS".
pub const MAGIC: [u8; 2] = *b"TS";
/// The current encoding version.
pub const VERSION: u8 = 1;
/// Set in the version byte of a frame whose body is JSON.
pub const JSON_BODY: u8 = 0x80;
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
    /// The JSON body does not match the expected type.
    #[error("malformed JSON body: {0}")]
    Json(#[from] serde_json::Error),
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

/// Encodes a message for another process: compact when its serde form
/// round-trips through postcard (decoded and encoded again to the same
/// bytes), else with a JSON body.
pub fn encode_message<T: Serialize + DeserializeOwned>(value: &T) -> Result<Vec<u8>, CodecError> {
    if let Ok(frame) = encode(value)
        && let Ok(back) = decode::<T>(&frame)
        && encode(&back).is_ok_and(|again| again == frame)
    {
        return Ok(frame);
    }
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION | JSON_BODY);
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

/// Decodes a frame, compact or JSON, checking magic and version first.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, CodecError> {
    if frame.len() < HEADER || frame[..2] != MAGIC {
        return Err(CodecError::NotAFrame);
    }
    match frame[2] {
        VERSION => Ok(postcard::from_bytes(&frame[HEADER..])?),
        v if v == VERSION | JSON_BODY => Ok(serde_json::from_slice(&frame[HEADER..])?),
        v => Err(CodecError::UnsupportedVersion {
            found: v & !JSON_BODY,
        }),
    }
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

    /// Shaped like the risk monitor's transitions: an internally tagged
    /// enum, flattened into its parent, and a skipped field.
    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Tagged {
        reason: String,
        #[serde(flatten)]
        by: By,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notes: Vec<String>,
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    #[serde(tag = "by", rename_all = "snake_case")]
    enum By {
        Rule { rule: String },
        Manual { user: String },
    }

    #[test]
    fn messages_postcard_cannot_carry_travel_as_json() {
        for v in [
            Tagged {
                reason: "runaway".into(),
                by: By::Rule {
                    rule: "runaway_orders".into(),
                },
                notes: vec![],
            },
            Tagged {
                reason: "ops".into(),
                by: By::Manual { user: "ana".into() },
                notes: vec!["paged".into()],
            },
        ] {
            let compact = encode(&v).ok().and_then(|f| decode::<Tagged>(&f).ok());
            assert!(compact.as_ref() != Some(&v), "postcard carries {v:?}");
            let frame = encode_message(&v).unwrap();
            assert_eq!(frame[2], VERSION | JSON_BODY);
            assert_eq!(decode::<Tagged>(&frame).unwrap(), v);
        }
        // What postcard carries stays compact.
        let ev = trade();
        let frame = encode_message(&ev).unwrap();
        assert_eq!(frame, encode(&ev).unwrap());
        assert_eq!(decode::<Event>(&frame).unwrap(), ev);
    }

    #[test]
    fn encode_into_appends() {
        let mut buf = vec![0xAA];
        encode_into(&Amount::from_units(3), &mut buf).unwrap();
        assert_eq!(buf[0], 0xAA);
        assert_eq!(decode::<Amount>(&buf[1..]).unwrap(), Amount::from_units(3));
    }
}
