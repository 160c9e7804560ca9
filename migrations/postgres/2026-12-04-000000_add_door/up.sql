-- The front door a call came in by: native, chat_completions, messages, responses or
-- embeddings. Rows from before doors were recorded say native (the two doors of that time
-- cannot be told apart afterwards).
ALTER TABLE usage_logs ADD COLUMN door VARCHAR(32) NOT NULL DEFAULT 'native';
