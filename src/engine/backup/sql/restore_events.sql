-- The restore's map of archived consent events to their new ids, gone with its transaction.
CREATE TEMP TABLE flomastr_restore_events (old bigint PRIMARY KEY, new bigint NOT NULL) ON COMMIT DROP
