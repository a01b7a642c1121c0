#!/usr/bin/env bash
# tradestack: one login role per service, ts_monitor for postgres-exporter
# and ts_grafana for Grafana's TimescaleDB datasource. Runs once, when the data volume is initialised, after
# 10-tradestack-schemas.sql. Passwords come from the postgres container's
# environment (PG_PASSWORD_<SERVICE>, _MONITOR, _GRAFANA, set from .env by
# docker-compose.yml); they are never written to a file.
#
# Changing a password later (init scripts do not run again):
#   docker compose exec postgres psql -U postgres -d tradestack \
#     -c "ALTER ROLE ts_exchange PASSWORD 'new-password'"
# then update .env and recreate the service (docker compose up -d exchange).

set -eo pipefail

services=(registry exchange marketdata strategy risk custodian coordinator audit)

password_of() {
    local name=$1 value=${!1:-}
    if [[ -z $value ]]; then
        echo "tradestack postgres init: $name is not set" >&2
        exit 1
    fi
    if [[ ${#value} -lt 16 || $value == change-me* ]]; then
        echo "tradestack postgres init: $name is a placeholder or shorter than 16 characters" >&2
        exit 1
    fi
    printf '%s' "$value"
}

run_psql() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
        --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" "$@"
}

for service in "${services[@]}"; do
    password=$(password_of "PG_PASSWORD_${service^^}")
    # psql variables: :"role" is quoted as an identifier, :'password' as a
    # literal, so no value is ever spliced into SQL text by the shell.
    run_psql --set=role="ts_${service}" --set=password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password' CONNECTION LIMIT 30 IN ROLE tradestack;
-- Act as the owner from login on: tables the migrations create belong to
-- tradestack whichever service happens to apply them.
ALTER ROLE :"role" SET role = 'tradestack';
SQL
done

password=$(password_of PG_PASSWORD_MONITOR)
run_psql --set=password="$password" <<'SQL'
CREATE ROLE ts_monitor LOGIN PASSWORD :'password' CONNECTION LIMIT 5
    IN ROLE pg_monitor, tradestack_readonly;
SQL

password=$(password_of PG_PASSWORD_GRAFANA)
run_psql --set=password="$password" <<'SQL'
CREATE ROLE ts_grafana LOGIN PASSWORD :'password' CONNECTION LIMIT 20
    IN ROLE tradestack_readonly;
-- Dashboards are read-only: a runaway panel query cannot hold locks for long.
ALTER ROLE ts_grafana SET default_transaction_read_only = on;
ALTER ROLE ts_grafana SET statement_timeout = '30s';
SQL

echo "tradestack postgres init: created roles ${services[*]/#/ts_} ts_monitor ts_grafana"
