-- The audit trail is append-only: a second record with the same id is an error.
CREATE TABLE audit_records (
    id      TEXT PRIMARY KEY NOT NULL,
    ts      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
) STRICT;
CREATE INDEX audit_records_subject_idx ON audit_records (subject, ts);
CREATE INDEX audit_records_ts_idx ON audit_records (ts);

-- Simulation runs. The u64 seed is stored as an exact decimal string.
CREATE TABLE audit_scenario_runs (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    seed        TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    report      TEXT
) STRICT;
CREATE INDEX audit_scenario_runs_started_idx ON audit_scenario_runs (started_at);
