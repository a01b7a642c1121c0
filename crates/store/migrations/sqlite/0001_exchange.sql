-- SQLite has no schemas inside one file, so tables carry their domain as a
-- prefix (exchange_, risk_, audit_, registry_, bus_) mirroring the PostgreSQL
-- schemas. STRICT tables refuse values of the wrong type instead of coercing.
-- Amounts (raw i128) are TEXT holding the exact decimal integer: a NUMERIC
-- column would silently turn large values into lossy REALs.

CREATE TABLE exchange_accounts (
    id         TEXT PRIMARY KEY NOT NULL,
    tier       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE exchange_balances (
    account    TEXT NOT NULL,
    asset      TEXT NOT NULL,
    free       TEXT NOT NULL,
    locked     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account, asset)
) STRICT;

CREATE TABLE exchange_orders (
    id              INTEGER PRIMARY KEY NOT NULL,
    client_order_id TEXT NOT NULL,
    account         TEXT NOT NULL,
    strategy        TEXT,
    instrument      TEXT NOT NULL,
    side            TEXT NOT NULL,
    order_type      TEXT NOT NULL,
    time_in_force   TEXT NOT NULL,
    price           INTEGER,
    stop_price      INTEGER,
    expire_at       INTEGER,
    quantity        INTEGER NOT NULL,
    filled          INTEGER NOT NULL,
    status          TEXT NOT NULL,
    -- Derived from status on write so "open orders" is an indexable predicate.
    is_open         INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX exchange_orders_account_idx ON exchange_orders (account, id);
CREATE INDEX exchange_orders_instrument_idx ON exchange_orders (instrument, id);
CREATE INDEX exchange_orders_open_idx ON exchange_orders (account, id) WHERE is_open;

CREATE TABLE exchange_fills (
    trade_id        INTEGER NOT NULL,
    order_id        INTEGER NOT NULL,
    client_order_id TEXT NOT NULL,
    account         TEXT NOT NULL,
    strategy        TEXT,
    instrument      TEXT NOT NULL,
    side            TEXT NOT NULL,
    price           INTEGER NOT NULL,
    quantity        INTEGER NOT NULL,
    fee             TEXT NOT NULL,
    fee_asset       TEXT NOT NULL,
    liquidity       TEXT NOT NULL,
    ts              INTEGER NOT NULL,
    -- A redelivered fill is the same row: inserts are idempotent on this key.
    PRIMARY KEY (trade_id, order_id)
) STRICT;
CREATE INDEX exchange_fills_account_idx ON exchange_fills (account, ts);
CREATE INDEX exchange_fills_order_idx ON exchange_fills (order_id);
CREATE INDEX exchange_fills_instrument_idx ON exchange_fills (instrument, ts);
