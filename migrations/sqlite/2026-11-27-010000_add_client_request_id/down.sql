DROP INDEX usage_logs_client_request_id_idx;
ALTER TABLE usage_logs DROP COLUMN client_request_id;
