-- Service snapshots: each service's state under a stable id, replaced as a
-- whole in the same transaction as its audit records and outbox messages.
-- The state_ prefix mirrors the PostgreSQL `state` schema. version guards
-- optimistic concurrency (a u64 that fits INTEGER); data is JSON text.
CREATE TABLE state_snapshots (
    id      TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 0),
    ts      INTEGER NOT NULL,
    data    TEXT NOT NULL
) STRICT;
