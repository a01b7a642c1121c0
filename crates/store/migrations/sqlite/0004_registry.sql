-- Service registry entries; tags and meta are JSON text.
CREATE TABLE registry_entries (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    address       TEXT NOT NULL,
    port          INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),
    tags          TEXT NOT NULL,
    meta          TEXT NOT NULL,
    registered_at INTEGER NOT NULL
) STRICT;
CREATE INDEX registry_entries_name_idx ON registry_entries (name);
