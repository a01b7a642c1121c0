-- Service snapshots: each service's state under a stable id, replaced as a
-- whole in the same transaction as its audit records and outbox messages.
-- They get their own `state` schema rather than `audit`: audit holds the
-- append-only history (it can be granted insert-only), while a snapshot is
-- mutable current state written by every service, not one domain's table.
-- version guards optimistic concurrency (never negative: it is a u64 that
-- fits BIGINT); ts is BIGINT nanoseconds since the Unix epoch.
CREATE SCHEMA IF NOT EXISTS state;

CREATE TABLE state.snapshots (
    id      TEXT PRIMARY KEY,
    version BIGINT NOT NULL CHECK (version >= 0),
    ts      BIGINT NOT NULL,
    data    JSONB NOT NULL
);
