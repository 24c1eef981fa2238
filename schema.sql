-- llm-proxy database schema: the source of truth. gateway/db.py maps it with peewee
-- and tests/test_schema.py proves the two agree. Applied with CREATE ... IF NOT EXISTS
-- on every start, so a fresh database needs nothing else.

CREATE TABLE IF NOT EXISTS client_keys (
    id                  INTEGER NOT NULL PRIMARY KEY,
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
    id                  INTEGER NOT NULL PRIMARY KEY,
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

-- Dashboard (issue 5) -------------------------------------------------------------

CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
CREATE INDEX IF NOT EXISTS requests_provider_ts ON requests (provider, ts);
CREATE INDEX IF NOT EXISTS requests_model_ts ON requests (model_requested, ts);

CREATE TABLE IF NOT EXISTS users (
    id                   INTEGER NOT NULL PRIMARY KEY,
    name                 TEXT    NOT NULL UNIQUE,
    role                 TEXT    NOT NULL,          -- admin or viewer
    password_hash        TEXT    NOT NULL,          -- scrypt$n$r$p$salt$hash (gateway/users.py)
    must_change_password INTEGER NOT NULL DEFAULT 0,
    created_at           REAL    NOT NULL
);

-- One row per signed-in browser; the signed cookie holds the nonce, this its hash.
-- Signing out deletes the row, so an old cookie stops working.
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    nonce_hash  TEXT    NOT NULL PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    created_at  REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_user ON dashboard_sessions (user_id);

-- Provider settings changed in the dashboard, applied over config.toml at run time.
CREATE TABLE IF NOT EXISTS provider_overrides (
    provider       TEXT    NOT NULL PRIMARY KEY,
    enabled        INTEGER,                         -- NULL: as configured
    base_url       TEXT,                            -- NULL: as configured
    api_key_sealed TEXT,                            -- obfuscated at rest (gateway/overrides.py)
    api_key_last4  TEXT,
    updated_at     REAL    NOT NULL
);

-- Rollups, written by the log writer in the same transaction as the request rows
-- (gateway/rollups.py). Every chart and total reads these, never the raw rows.
CREATE TABLE IF NOT EXISTS rollup_minute (
    bucket             INTEGER NOT NULL,            -- unix seconds at the start of the minute
    client_key_id      INTEGER NOT NULL,            -- 0: the request was not authenticated
    provider           TEXT    NOT NULL,            -- '' when none was chosen
    model              TEXT    NOT NULL,            -- model_requested ('' when none)
    requests           INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,  -- status >= 400
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL    NOT NULL DEFAULT 0,  -- priced requests only
    unpriced           INTEGER NOT NULL DEFAULT 0,  -- requests with tokens but no known price
    latency_ms_sum     REAL    NOT NULL DEFAULT 0,
    h0                 INTEGER NOT NULL DEFAULT 0,  -- latency histogram (rollups.LATENCY_BOUNDS_MS)
    h1                 INTEGER NOT NULL DEFAULT 0,
    h2                 INTEGER NOT NULL DEFAULT 0,
    h3                 INTEGER NOT NULL DEFAULT 0,
    h4                 INTEGER NOT NULL DEFAULT 0,
    h5                 INTEGER NOT NULL DEFAULT 0,
    h6                 INTEGER NOT NULL DEFAULT 0,
    h7                 INTEGER NOT NULL DEFAULT 0,
    h8                 INTEGER NOT NULL DEFAULT 0,
    h9                 INTEGER NOT NULL DEFAULT 0,
    h10                INTEGER NOT NULL DEFAULT 0,
    h11                INTEGER NOT NULL DEFAULT 0,
    h12                INTEGER NOT NULL DEFAULT 0,
    h13                INTEGER NOT NULL DEFAULT 0,
    h14                INTEGER NOT NULL DEFAULT 0,
    h15                INTEGER NOT NULL DEFAULT 0,
    h16                INTEGER NOT NULL DEFAULT 0,
    h17                INTEGER NOT NULL DEFAULT 0,
    h18                INTEGER NOT NULL DEFAULT 0,
    h19                INTEGER NOT NULL DEFAULT 0,
    h20                INTEGER NOT NULL DEFAULT 0,
    h21                INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, client_key_id, provider, model)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rollup_hour (
    bucket             INTEGER NOT NULL,            -- unix seconds at the start of the hour
    client_key_id      INTEGER NOT NULL,            -- 0: the request was not authenticated
    provider           TEXT    NOT NULL,            -- '' when none was chosen
    model              TEXT    NOT NULL,            -- model_requested ('' when none)
    requests           INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,  -- status >= 400
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL    NOT NULL DEFAULT 0,  -- priced requests only
    unpriced           INTEGER NOT NULL DEFAULT 0,  -- requests with tokens but no known price
    latency_ms_sum     REAL    NOT NULL DEFAULT 0,
    h0                 INTEGER NOT NULL DEFAULT 0,  -- latency histogram (rollups.LATENCY_BOUNDS_MS)
    h1                 INTEGER NOT NULL DEFAULT 0,
    h2                 INTEGER NOT NULL DEFAULT 0,
    h3                 INTEGER NOT NULL DEFAULT 0,
    h4                 INTEGER NOT NULL DEFAULT 0,
    h5                 INTEGER NOT NULL DEFAULT 0,
    h6                 INTEGER NOT NULL DEFAULT 0,
    h7                 INTEGER NOT NULL DEFAULT 0,
    h8                 INTEGER NOT NULL DEFAULT 0,
    h9                 INTEGER NOT NULL DEFAULT 0,
    h10                INTEGER NOT NULL DEFAULT 0,
    h11                INTEGER NOT NULL DEFAULT 0,
    h12                INTEGER NOT NULL DEFAULT 0,
    h13                INTEGER NOT NULL DEFAULT 0,
    h14                INTEGER NOT NULL DEFAULT 0,
    h15                INTEGER NOT NULL DEFAULT 0,
    h16                INTEGER NOT NULL DEFAULT 0,
    h17                INTEGER NOT NULL DEFAULT 0,
    h18                INTEGER NOT NULL DEFAULT 0,
    h19                INTEGER NOT NULL DEFAULT 0,
    h20                INTEGER NOT NULL DEFAULT 0,
    h21                INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, client_key_id, provider, model)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rollup_day (
    bucket             INTEGER NOT NULL,            -- unix seconds at the start of the UTC day
    client_key_id      INTEGER NOT NULL,            -- 0: the request was not authenticated
    provider           TEXT    NOT NULL,            -- '' when none was chosen
    model              TEXT    NOT NULL,            -- model_requested ('' when none)
    requests           INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,  -- status >= 400
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL    NOT NULL DEFAULT 0,  -- priced requests only
    unpriced           INTEGER NOT NULL DEFAULT 0,  -- requests with tokens but no known price
    latency_ms_sum     REAL    NOT NULL DEFAULT 0,
    h0                 INTEGER NOT NULL DEFAULT 0,  -- latency histogram (rollups.LATENCY_BOUNDS_MS)
    h1                 INTEGER NOT NULL DEFAULT 0,
    h2                 INTEGER NOT NULL DEFAULT 0,
    h3                 INTEGER NOT NULL DEFAULT 0,
    h4                 INTEGER NOT NULL DEFAULT 0,
    h5                 INTEGER NOT NULL DEFAULT 0,
    h6                 INTEGER NOT NULL DEFAULT 0,
    h7                 INTEGER NOT NULL DEFAULT 0,
    h8                 INTEGER NOT NULL DEFAULT 0,
    h9                 INTEGER NOT NULL DEFAULT 0,
    h10                INTEGER NOT NULL DEFAULT 0,
    h11                INTEGER NOT NULL DEFAULT 0,
    h12                INTEGER NOT NULL DEFAULT 0,
    h13                INTEGER NOT NULL DEFAULT 0,
    h14                INTEGER NOT NULL DEFAULT 0,
    h15                INTEGER NOT NULL DEFAULT 0,
    h16                INTEGER NOT NULL DEFAULT 0,
    h17                INTEGER NOT NULL DEFAULT 0,
    h18                INTEGER NOT NULL DEFAULT 0,
    h19                INTEGER NOT NULL DEFAULT 0,
    h20                INTEGER NOT NULL DEFAULT 0,
    h21                INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, client_key_id, provider, model)
) WITHOUT ROWID;

-- The same sums over every client, provider and model together (same columns, the key
-- parts fixed), so unfiltered charts read one row per bucket instead of one per mix.
CREATE TABLE IF NOT EXISTS rollup_minute_all (
    bucket             INTEGER NOT NULL,            -- unix seconds at the start of the minute
    client_key_id      INTEGER NOT NULL,            -- always 0
    provider           TEXT    NOT NULL,            -- always ''
    model              TEXT    NOT NULL,            -- always ''
    requests           INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL    NOT NULL DEFAULT 0,
    unpriced           INTEGER NOT NULL DEFAULT 0,
    latency_ms_sum     REAL    NOT NULL DEFAULT 0,
    h0                 INTEGER NOT NULL DEFAULT 0,
    h1                 INTEGER NOT NULL DEFAULT 0,
    h2                 INTEGER NOT NULL DEFAULT 0,
    h3                 INTEGER NOT NULL DEFAULT 0,
    h4                 INTEGER NOT NULL DEFAULT 0,
    h5                 INTEGER NOT NULL DEFAULT 0,
    h6                 INTEGER NOT NULL DEFAULT 0,
    h7                 INTEGER NOT NULL DEFAULT 0,
    h8                 INTEGER NOT NULL DEFAULT 0,
    h9                 INTEGER NOT NULL DEFAULT 0,
    h10                INTEGER NOT NULL DEFAULT 0,
    h11                INTEGER NOT NULL DEFAULT 0,
    h12                INTEGER NOT NULL DEFAULT 0,
    h13                INTEGER NOT NULL DEFAULT 0,
    h14                INTEGER NOT NULL DEFAULT 0,
    h15                INTEGER NOT NULL DEFAULT 0,
    h16                INTEGER NOT NULL DEFAULT 0,
    h17                INTEGER NOT NULL DEFAULT 0,
    h18                INTEGER NOT NULL DEFAULT 0,
    h19                INTEGER NOT NULL DEFAULT 0,
    h20                INTEGER NOT NULL DEFAULT 0,
    h21                INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, client_key_id, provider, model)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rollup_hour_all (
    bucket             INTEGER NOT NULL,            -- unix seconds at the start of the hour
    client_key_id      INTEGER NOT NULL,            -- always 0
    provider           TEXT    NOT NULL,            -- always ''
    model              TEXT    NOT NULL,            -- always ''
    requests           INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL    NOT NULL DEFAULT 0,
    unpriced           INTEGER NOT NULL DEFAULT 0,
    latency_ms_sum     REAL    NOT NULL DEFAULT 0,
    h0                 INTEGER NOT NULL DEFAULT 0,
    h1                 INTEGER NOT NULL DEFAULT 0,
    h2                 INTEGER NOT NULL DEFAULT 0,
    h3                 INTEGER NOT NULL DEFAULT 0,
    h4                 INTEGER NOT NULL DEFAULT 0,
    h5                 INTEGER NOT NULL DEFAULT 0,
    h6                 INTEGER NOT NULL DEFAULT 0,
    h7                 INTEGER NOT NULL DEFAULT 0,
    h8                 INTEGER NOT NULL DEFAULT 0,
    h9                 INTEGER NOT NULL DEFAULT 0,
    h10                INTEGER NOT NULL DEFAULT 0,
    h11                INTEGER NOT NULL DEFAULT 0,
    h12                INTEGER NOT NULL DEFAULT 0,
    h13                INTEGER NOT NULL DEFAULT 0,
    h14                INTEGER NOT NULL DEFAULT 0,
    h15                INTEGER NOT NULL DEFAULT 0,
    h16                INTEGER NOT NULL DEFAULT 0,
    h17                INTEGER NOT NULL DEFAULT 0,
    h18                INTEGER NOT NULL DEFAULT 0,
    h19                INTEGER NOT NULL DEFAULT 0,
    h20                INTEGER NOT NULL DEFAULT 0,
    h21                INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, client_key_id, provider, model)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rollup_day_all (
    bucket             INTEGER NOT NULL,            -- unix seconds at the start of the UTC day
    client_key_id      INTEGER NOT NULL,            -- always 0
    provider           TEXT    NOT NULL,            -- always ''
    model              TEXT    NOT NULL,            -- always ''
    requests           INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL    NOT NULL DEFAULT 0,
    unpriced           INTEGER NOT NULL DEFAULT 0,
    latency_ms_sum     REAL    NOT NULL DEFAULT 0,
    h0                 INTEGER NOT NULL DEFAULT 0,
    h1                 INTEGER NOT NULL DEFAULT 0,
    h2                 INTEGER NOT NULL DEFAULT 0,
    h3                 INTEGER NOT NULL DEFAULT 0,
    h4                 INTEGER NOT NULL DEFAULT 0,
    h5                 INTEGER NOT NULL DEFAULT 0,
    h6                 INTEGER NOT NULL DEFAULT 0,
    h7                 INTEGER NOT NULL DEFAULT 0,
    h8                 INTEGER NOT NULL DEFAULT 0,
    h9                 INTEGER NOT NULL DEFAULT 0,
    h10                INTEGER NOT NULL DEFAULT 0,
    h11                INTEGER NOT NULL DEFAULT 0,
    h12                INTEGER NOT NULL DEFAULT 0,
    h13                INTEGER NOT NULL DEFAULT 0,
    h14                INTEGER NOT NULL DEFAULT 0,
    h15                INTEGER NOT NULL DEFAULT 0,
    h16                INTEGER NOT NULL DEFAULT 0,
    h17                INTEGER NOT NULL DEFAULT 0,
    h18                INTEGER NOT NULL DEFAULT 0,
    h19                INTEGER NOT NULL DEFAULT 0,
    h20                INTEGER NOT NULL DEFAULT 0,
    h21                INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, client_key_id, provider, model)
) WITHOUT ROWID;
