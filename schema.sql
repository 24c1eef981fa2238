-- llm-proxy database schema: the source of truth. gateway/db.py maps it with peewee
-- and tests/test_schema.py proves the two agree. Applied with CREATE ... IF NOT EXISTS
-- on every start, so a fresh database needs nothing else.

CREATE TABLE IF NOT EXISTS client_keys (
    id                  INTEGER PRIMARY KEY,
    name                TEXT    NOT NULL UNIQUE,
    key_hash            TEXT    NOT NULL UNIQUE,   -- sha256 of the key; the key is never stored
    key_prefix          TEXT    NOT NULL,          -- first characters, to recognise a key
    created_at          REAL    NOT NULL,          -- unix seconds
    revoked_at          REAL,                      -- NULL while the key works
    rpm_limit           INTEGER,                   -- NULL: the configured default
    tpm_limit           INTEGER,
    max_streams         INTEGER,
    budget_daily_usd    REAL,
    budget_monthly_usd  REAL,
    budget_total_usd    REAL
);

CREATE TABLE IF NOT EXISTS requests (
    id                  INTEGER PRIMARY KEY,
    request_id          TEXT    NOT NULL,
    ts                  REAL    NOT NULL,          -- unix seconds when the request arrived
    client_key_id       INTEGER,                   -- NULL when authentication failed
    client_name         TEXT,
    client_ip           TEXT,
    provider            TEXT,
    model_requested     TEXT,
    model_answered      TEXT,
    stream              INTEGER NOT NULL DEFAULT 0,
    status              INTEGER NOT NULL,          -- HTTP status sent (499: client went away)
    error_type          TEXT,
    latency_ms          REAL    NOT NULL,
    ttft_ms             REAL,                      -- time to first streamed chunk
    prompt_tokens       INTEGER NOT NULL DEFAULT 0,
    completion_tokens   INTEGER NOT NULL DEFAULT 0,
    cached_tokens       INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens    INTEGER NOT NULL DEFAULT 0,
    tokens_estimated    INTEGER NOT NULL DEFAULT 0, -- 1: counted by the gateway, not reported
    cost_usd            REAL,                      -- NULL: price unknown
    price_version       TEXT,
    attempts            INTEGER NOT NULL DEFAULT 1,
    finish_reason       TEXT
);

CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE INDEX IF NOT EXISTS requests_client_ts ON requests (client_key_id, ts);
CREATE INDEX IF NOT EXISTS requests_provider_model_ts ON requests (provider, model_requested, ts);
