//! What travels on the bus: typed deliveries and encoded envelopes.

use std::sync::Arc;
use tradestack_model::{EventId, UnixNanos};

/// Message headers: ordered (name, value) pairs, like Kafka's.
pub type Headers = Vec<(String, String)>;

/// Header names with a fixed meaning on every transport.
pub mod headers {
    /// The event id, 32 hex digits.
    pub const ID: &str = "ts-id";
    /// Publish time, integer nanoseconds since the epoch.
    pub const TS: &str = "ts-ts";
    /// Broker log generation (see the outbox relay's data-loss handling).
    pub const EPOCH: &str = "ts-epoch";
    /// Topic a request's reply goes to.
    pub const REPLY_TO: &str = "reply-to";
    /// Correlates a reply with its request.
    pub const CORRELATION_ID: &str = "correlation-id";
}

/// One message as a subscriber receives it.
#[derive(Clone, Debug)]
pub struct Delivery<T> {
    /// Unique id, for deduplication.
    pub id: EventId,
    /// Partition key (the instrument), if any.
    pub key: Option<Arc<str>>,
    /// Headers, including trace context.
    pub headers: Headers,
    /// When it was published.
    pub ts: UnixNanos,
    /// The message.
    pub msg: T,
}

impl<T> Delivery<T> {
    /// A delivery with the given parts.
    pub fn new(id: EventId, key: Option<&str>, headers: Headers, ts: UnixNanos, msg: T) -> Self {
        Delivery {
            id,
            key: key.map(Arc::from),
            headers,
            ts,
            msg,
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An encoded message, as stored in the outbox and sent to a broker. It is
/// the outbox's own record, so relaying a row needs no conversion.
pub type RawEnvelope = tradestack_store::OutboxMessage;

/// Encodes a typed message into an envelope.
pub fn encode<T: serde::Serialize>(
    id: EventId,
    topic: &str,
    key: Option<&str>,
    ts: UnixNanos,
    msg: &T,
) -> Result<RawEnvelope, tradestack_model::codec::CodecError> {
    Ok(RawEnvelope {
        id,
        topic: topic.to_string(),
        key: key.map(|k| k.as_bytes().to_vec()),
        headers: Headers::new(),
        payload: tradestack_model::codec::encode(msg)?,
        created_at: ts,
    })
}

/// Decodes an envelope into a typed delivery.
pub fn decode<T: serde::de::DeserializeOwned>(
    env: &RawEnvelope,
) -> Result<Delivery<T>, tradestack_model::codec::CodecError> {
    let msg = tradestack_model::codec::decode(&env.payload)?;
    Ok(Delivery {
        id: env.id,
        key: env
            .key
            .as_ref()
            .map(|k| Arc::from(String::from_utf8_lossy(k).as_ref())),
        headers: env.headers.clone(),
        ts: env.created_at,
        msg,
    })
}
