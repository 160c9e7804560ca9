DROP TABLE usage_attempts;
ALTER TABLE usage_logs DROP COLUMN attempts;
