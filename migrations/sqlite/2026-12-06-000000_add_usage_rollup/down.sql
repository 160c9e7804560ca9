DROP TABLE usage_rollup;
DROP TABLE usage_hours;
