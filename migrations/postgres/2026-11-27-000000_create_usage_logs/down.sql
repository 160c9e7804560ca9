DROP TABLE usage_logs;
