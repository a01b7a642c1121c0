-- Service registry entries.
CREATE TABLE registry.entries (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    address       TEXT NOT NULL,
    port          BIGINT NOT NULL CHECK (port BETWEEN 0 AND 65535),
    tags          JSONB NOT NULL,
    meta          JSONB NOT NULL,
    registered_at BIGINT NOT NULL
);
CREATE INDEX entries_name_idx ON registry.entries (name);
