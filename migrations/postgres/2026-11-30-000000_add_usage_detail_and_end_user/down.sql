ALTER TABLE usage_logs DROP COLUMN end_user;
ALTER TABLE usage_logs DROP COLUMN reasoning_tokens;
ALTER TABLE usage_logs DROP COLUMN cache_write_tokens;
ALTER TABLE usage_logs DROP COLUMN cached_input_tokens;
