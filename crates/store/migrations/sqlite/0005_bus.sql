-- Transactional outbox: messages written in the same transaction as the state
-- they describe, relayed to the broker afterwards. AUTOINCREMENT guarantees a
-- seq is never reused, even after the newest rows are purged.
CREATE TABLE bus_outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    msg_key      BLOB,
    headers      TEXT NOT NULL,
    payload      BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER
) STRICT;
CREATE INDEX bus_outbox_pending_idx ON bus_outbox (seq) WHERE delivered_at IS NULL;
CREATE INDEX bus_outbox_delivered_idx ON bus_outbox (delivered_at) WHERE delivered_at IS NOT NULL;
