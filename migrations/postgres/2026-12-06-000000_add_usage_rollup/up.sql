-- The usage log summed per UTC hour, so reports over days and months read a few rows an hour
-- instead of every call (a million-row month: seconds to milliseconds). The log stays the
-- truth: an hour's rollup is computed from its rows once the hour is over ("sealed"), and any
-- row written into the hour afterwards (a journal replayed after an outage) makes the hour's
-- rollup stale until it is computed again. Reports read the log itself for every hour that is
-- not sealed and current. Not a public contract, unlike usage_logs: read it through the API.

-- One row per hour that has ever had a row written: `written` counts the batches written into
-- the hour, `sealed` is the count the rollup was computed at (NULL: never). The rollup is
-- current while they are equal.
CREATE TABLE usage_hours (
    hour    TIMESTAMP NOT NULL PRIMARY KEY,
    written BIGINT NOT NULL,
    sealed  BIGINT
);

-- Per sealed hour, per dimension (`all`, `specialist`, `model`, `provider`, `user`, `door`)
-- and value: the calls, outcomes, tokens, cost and latency, with the latencies as a histogram
-- of 1%-wide bins (see usage-store's rollup.rs for the encoding).
CREATE TABLE usage_rollup (
    dimension         TEXT NOT NULL,
    hour              TIMESTAMP NOT NULL,
    key               TEXT NOT NULL,
    requests          BIGINT NOT NULL,
    successes         BIGINT NOT NULL,
    input_tokens      BIGINT NOT NULL,
    output_tokens     BIGINT NOT NULL,
    cost_usd          DOUBLE PRECISION NOT NULL,
    latency_sum_ms    DOUBLE PRECISION NOT NULL,
    latency_min_ms    DOUBLE PRECISION NOT NULL,
    latency_max_ms    DOUBLE PRECISION NOT NULL,
    latency_histogram BYTEA NOT NULL,
    PRIMARY KEY (dimension, hour, key)
);

-- The hours the log already holds: unsealed, so the server seals them in the background.
INSERT INTO usage_hours (hour, written)
SELECT DISTINCT date_trunc('hour', timestamp), 1 FROM usage_logs
-- `-infinity` and `infinity` (typed in by hand) have no hour, and no report range holds them.
WHERE isfinite(timestamp);
