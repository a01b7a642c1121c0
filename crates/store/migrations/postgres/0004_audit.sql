-- The audit trail is append-only: a second record with the same id is an error.
CREATE TABLE audit.records (
    id      TEXT PRIMARY KEY,
    ts      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  JSONB NOT NULL
);
CREATE INDEX records_subject_idx ON audit.records (subject, ts);
CREATE INDEX records_ts_idx ON audit.records (ts);

-- Simulation runs. The u64 seed is stored as an exact decimal.
CREATE TABLE audit.scenario_runs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    seed        NUMERIC(20, 0) NOT NULL,
    status      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    report      JSONB
);
CREATE INDEX scenario_runs_started_idx ON audit.scenario_runs (started_at);
