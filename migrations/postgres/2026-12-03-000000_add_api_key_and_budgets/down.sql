DROP TABLE budget_revision;
DROP TABLE budgets;
DROP INDEX usage_logs_api_key_timestamp_idx;
DROP INDEX usage_logs_specialist_timestamp_idx;
ALTER TABLE usage_logs DROP COLUMN api_key;
