-- tradestack: database layout. Runs once, when the postgres data volume is
-- initialised (docker-entrypoint-initdb.d), as the superuser, in the
-- tradestack database (POSTGRES_DB). 20-tradestack-roles.sh then creates the
-- login roles, whose passwords come from the environment.
--
-- Ownership model. The state store (crates/store) opens one connection pool
-- per service and applies every migration, for every schema, at start, under
-- an advisory lock; every service writes several schemas (its own plus the
-- shared bus.outbox, audit.records and state.snapshots). So the schemas and
-- tables belong to one owner role, `tradestack`, and each service logs in as
-- its own role that acts as that owner (ALTER ROLE ... SET role, in
-- 20-tradestack-roles.sh). What per-service roles buy here: separate
-- credentials (rotate or revoke one service), per-service connection limits,
-- and the service's name in pg_stat_activity (session_user). Per-schema least
-- privilege would need migrations run by a separate role first; see
-- docs/DEPLOYMENT.md.

\set ON_ERROR_STOP on

-- TimescaleDB: the marketdata service's postgres sink turns its tables into
-- hypertables with compression and retention policies when it finds the
-- extension. The image's own init script creates it too; this is idempotent.
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- The owner. LOGIN without a password: TimescaleDB runs a hypertable's
-- background jobs (compression, retention) as the table owner and refuses
-- owners that cannot log in, while no password means no one can log in as it
-- over the network (scram-sha-256 in pg_hba.conf).
CREATE ROLE tradestack LOGIN PASSWORD NULL NOSUPERUSER NOCREATEDB NOCREATEROLE;
ALTER DATABASE tradestack OWNER TO tradestack;

-- Read-only access for dashboards and ad-hoc queries (ts_grafana, ts_monitor).
CREATE ROLE tradestack_readonly NOLOGIN;

REVOKE ALL ON DATABASE tradestack FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE tradestack TO tradestack;
GRANT CONNECT ON DATABASE tradestack TO tradestack_readonly;

-- sqlx keeps its migration table (_sqlx_migrations) in public. Since
-- PostgreSQL 15 only the database owner (now tradestack) may create there.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- One schema per domain (crates/store/migrations/postgres), plus `market`,
-- the default schema of the marketdata service's postgres sink. The
-- migrations create them IF NOT EXISTS; creating them here fixes the owner.
CREATE SCHEMA IF NOT EXISTS exchange AUTHORIZATION tradestack;
CREATE SCHEMA IF NOT EXISTS custody  AUTHORIZATION tradestack;
CREATE SCHEMA IF NOT EXISTS risk     AUTHORIZATION tradestack;
CREATE SCHEMA IF NOT EXISTS audit    AUTHORIZATION tradestack;
CREATE SCHEMA IF NOT EXISTS registry AUTHORIZATION tradestack;
CREATE SCHEMA IF NOT EXISTS bus      AUTHORIZATION tradestack;
CREATE SCHEMA IF NOT EXISTS state    AUTHORIZATION tradestack;
CREATE SCHEMA IF NOT EXISTS market   AUTHORIZATION tradestack;

GRANT USAGE ON SCHEMA public, exchange, custody, risk, audit, registry, bus, state, market
    TO tradestack_readonly;
ALTER DEFAULT PRIVILEGES FOR ROLE tradestack
    IN SCHEMA public, exchange, custody, risk, audit, registry, bus, state, market
    GRANT SELECT ON TABLES TO tradestack_readonly;
