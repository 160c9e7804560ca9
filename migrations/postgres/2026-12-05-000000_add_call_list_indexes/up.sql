-- What the console's call list filters on, newest first, beside the indexes it already has
-- (timestamp; user_email_hash, timestamp; specialist_id, timestamp). A filtered page walks
-- one of these backwards from the cursor and stops after a page of rows, instead of walking
-- the whole log in time order and skipping every row of another door, code or outcome.

-- Doors: a door with a small share of the traffic (embeddings) would otherwise cost a scan of
-- every other door's rows per page.
CREATE INDEX usage_logs_door_timestamp_idx ON usage_logs (door, timestamp);

-- Error codes: partial, because successful calls (nearly all rows) have none and should not
-- pay for the index on insert; `error_code = ?` implies the index's condition.
CREATE INDEX usage_logs_error_code_timestamp_idx ON usage_logs (error_code, timestamp)
    WHERE error_code IS NOT NULL;

-- Failed calls, whatever their code: partial for the same reason. The call list writes the
-- condition as `NOT success`, the same expression, so the planner can match it.
CREATE INDEX usage_logs_failed_timestamp_idx ON usage_logs (timestamp) WHERE NOT success;
