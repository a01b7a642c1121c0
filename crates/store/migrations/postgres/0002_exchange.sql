-- Exchange state. Prices and quantities are raw i64 counts of 1e-8 units
-- (BIGINT); amounts are raw i128 counts (NUMERIC(39,0) holds every i128
-- exactly). Timestamps are BIGINT nanoseconds since the Unix epoch.

CREATE TABLE exchange.accounts (
    id         TEXT PRIMARY KEY,
    tier       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE exchange.balances (
    account    TEXT NOT NULL,
    asset      TEXT NOT NULL,
    free       NUMERIC(39, 0) NOT NULL,
    locked     NUMERIC(39, 0) NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account, asset)
);

CREATE TABLE exchange.orders (
    id              BIGINT PRIMARY KEY,
    client_order_id TEXT NOT NULL,
    account         TEXT NOT NULL,
    strategy        TEXT,
    instrument      TEXT NOT NULL,
    side            TEXT NOT NULL,
    order_type      TEXT NOT NULL,
    time_in_force   TEXT NOT NULL,
    price           BIGINT,
    stop_price      BIGINT,
    expire_at       BIGINT,
    quantity        BIGINT NOT NULL,
    filled          BIGINT NOT NULL,
    status          TEXT NOT NULL,
    -- Derived from status on write so "open orders" is an indexable predicate.
    is_open         BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX orders_account_idx ON exchange.orders (account, id);
CREATE INDEX orders_instrument_idx ON exchange.orders (instrument, id);
CREATE INDEX orders_open_idx ON exchange.orders (account, id) WHERE is_open;

CREATE TABLE exchange.fills (
    trade_id        BIGINT NOT NULL,
    order_id        BIGINT NOT NULL,
    client_order_id TEXT NOT NULL,
    account         TEXT NOT NULL,
    strategy        TEXT,
    instrument      TEXT NOT NULL,
    side            TEXT NOT NULL,
    price           BIGINT NOT NULL,
    quantity        BIGINT NOT NULL,
    fee             NUMERIC(39, 0) NOT NULL,
    fee_asset       TEXT NOT NULL,
    liquidity       TEXT NOT NULL,
    ts              BIGINT NOT NULL,
    -- A redelivered fill is the same row: inserts are idempotent on this key.
    PRIMARY KEY (trade_id, order_id)
);
CREATE INDEX fills_account_idx ON exchange.fills (account, ts);
CREATE INDEX fills_order_idx ON exchange.fills (order_id);
CREATE INDEX fills_instrument_idx ON exchange.fills (instrument, ts);
