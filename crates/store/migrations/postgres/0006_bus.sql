-- Transactional outbox: messages written in the same transaction as the state
-- they describe, relayed to the broker afterwards. seq is the relay order.
CREATE TABLE bus.outbox (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     TEXT NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    msg_key      BYTEA,
    headers      JSONB NOT NULL,
    payload      BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX outbox_pending_idx ON bus.outbox (seq) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivered_idx ON bus.outbox (delivered_at) WHERE delivered_at IS NOT NULL;
