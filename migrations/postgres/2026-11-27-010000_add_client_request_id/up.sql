-- The caller's own request id (`X-Client-Request-Id`, or an `X-Request-Id` it sent), kept for
-- joining traces up. Not unique: a caller may reuse one, and every call must still get its row;
-- `request_id` (always the gateway's) stays the unique key. The index is partial: most calls carry
-- no client id, and their inserts should not pay for it.
ALTER TABLE usage_logs ADD COLUMN client_request_id VARCHAR(128);
CREATE INDEX usage_logs_client_request_id_idx ON usage_logs (client_request_id)
    WHERE client_request_id IS NOT NULL;
