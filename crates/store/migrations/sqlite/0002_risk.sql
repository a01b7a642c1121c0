-- Risk alerts, upserted by id as a condition is seen again or resolves.
CREATE TABLE risk_alerts (
    id         TEXT PRIMARY KEY NOT NULL,
    rule       TEXT NOT NULL,
    severity   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    message    TEXT NOT NULL,
    value      TEXT NOT NULL,
    threshold  TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    resolved   INTEGER NOT NULL
) STRICT;
CREATE INDEX risk_alerts_rule_idx ON risk_alerts (rule, last_seen);
CREATE INDEX risk_alerts_unresolved_idx ON risk_alerts (last_seen) WHERE NOT resolved;
