-- The name of the static API key the caller authenticated with (auth.api_keys[].name), NULL for
-- a JWT or anonymous caller: what a budget of scope "key" sums. Cut to 128 characters by the
-- gateway before it is written.
ALTER TABLE usage_logs ADD COLUMN api_key VARCHAR(128);

-- What the budgets' spend sums filter on (user_email_hash and timestamp have theirs): a sum
-- over a period reads only the period's rows of one specialist or one key.
CREATE INDEX usage_logs_specialist_timestamp_idx ON usage_logs (specialist_id, timestamp);
CREATE INDEX usage_logs_api_key_timestamp_idx ON usage_logs (api_key, timestamp);

-- Budgets managed over HTTP. Each is its JSON (the config's form of one [[budgets]] entry),
-- which the gateway parses; the columns beside it are what the database must enforce: ids
-- unique, and a change applied only to the version it was based on (version).
CREATE TABLE budgets (
    id         VARCHAR(64) PRIMARY KEY,
    definition TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    version    BIGINT NOT NULL
);

-- One row: bumped in the transaction of every change, so a server polls one number to learn
-- whether its copy of the budgets is current.
CREATE TABLE budget_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO budget_revision (id, revision) VALUES (1, 0);
