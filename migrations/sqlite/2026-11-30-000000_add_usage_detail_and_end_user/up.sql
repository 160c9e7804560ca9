-- What modern models bill apart: prompt tokens read from and written to the upstream's prompt
-- cache, and reasoning tokens. Both cache counts are subsets of input_tokens, reasoning of
-- output_tokens (one rule for every provider), so old rows read as "no detail" with 0.
ALTER TABLE usage_logs ADD COLUMN cached_input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_logs ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_logs ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
-- The caller's own end-user id (the OpenAI `user` field), capped at 256 characters by the
-- gateway before it is written.
ALTER TABLE usage_logs ADD COLUMN end_user VARCHAR(256);
