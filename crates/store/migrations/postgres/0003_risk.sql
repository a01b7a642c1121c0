-- Risk alerts, upserted by id as a condition is seen again or resolves.
CREATE TABLE risk.alerts (
    id         TEXT PRIMARY KEY,
    rule       TEXT NOT NULL,
    severity   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    message    TEXT NOT NULL,
    value      NUMERIC(39, 0) NOT NULL,
    threshold  NUMERIC(39, 0) NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    resolved   BOOLEAN NOT NULL
);
CREATE INDEX alerts_rule_idx ON risk.alerts (rule, last_seen);
CREATE INDEX alerts_unresolved_idx ON risk.alerts (last_seen) WHERE NOT resolved;
