-- How many upstream attempts a call made: 0 when it never reached an upstream (provider not
-- configured), 1 for the usual call, more when it fell back to another target or a stream was
-- continued on one. Rows from before fallbacks existed made exactly one.
ALTER TABLE usage_logs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;

-- Each attempt of a call that made more than one, numbered from 1 in the order made. A call of
-- one attempt has no row here: its usage_logs row is that attempt's detail, so the usual call
-- writes nothing more. The row's provider/model name the target that served the call (or the
-- last tried); its tokens and cost are the sums of these. The key makes a replayed batch store
-- each attempt once. No foreign key: the rows go in the same transaction as their parent, and
-- PostgreSQL's COPY of usage_logs should not pay for a trigger per row.
CREATE TABLE usage_attempts (
    request_id          VARCHAR(128) NOT NULL,
    attempt             SMALLINT NOT NULL,
    provider            VARCHAR(16) NOT NULL,
    model               VARCHAR(200) NOT NULL,
    base_url            TEXT,
    error_code          VARCHAR(64),
    input_tokens        BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens  BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens    BIGINT NOT NULL DEFAULT 0,
    tokens_estimated    BOOLEAN NOT NULL DEFAULT 0,
    estimated_cost_usd  DOUBLE PRECISION NOT NULL,
    pricing_known       BOOLEAN NOT NULL DEFAULT 1,
    latency_ms          DOUBLE PRECISION NOT NULL,
    continuation        BOOLEAN NOT NULL DEFAULT 0,
    PRIMARY KEY (request_id, attempt)
);
