-- One row per chat call. Ops query this table directly: its name and columns are a public
-- contract (the original service's names, kept). Timestamps are UTC (TIMESTAMP WITHOUT TIME
-- ZONE holding UTC, the same type on SQLite and PostgreSQL).
CREATE TABLE usage_logs (
    id                 BIGSERIAL PRIMARY KEY,
    timestamp          TIMESTAMP NOT NULL,
    request_id         VARCHAR(128) NOT NULL UNIQUE,
    user_email_hash    VARCHAR(64),
    specialist_id      VARCHAR(64) NOT NULL,
    specialist_name    VARCHAR(100) NOT NULL,
    provider           VARCHAR(16) NOT NULL,
    model              VARCHAR(200) NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    tokens_estimated   BOOLEAN NOT NULL DEFAULT FALSE,
    estimated_cost_usd DOUBLE PRECISION NOT NULL,
    pricing_known      BOOLEAN NOT NULL DEFAULT TRUE,
    latency_ms         DOUBLE PRECISION NOT NULL,
    ttft_ms            DOUBLE PRECISION,
    success            BOOLEAN NOT NULL,
    error_code         VARCHAR(64),
    streamed           BOOLEAN NOT NULL
);

CREATE INDEX usage_logs_timestamp_idx ON usage_logs (timestamp);
CREATE INDEX usage_logs_user_timestamp_idx ON usage_logs (user_email_hash, timestamp);
