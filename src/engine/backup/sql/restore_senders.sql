-- The restore's map of archived senders to the target's, gone with its transaction.
CREATE TEMP TABLE flomastr_restore_senders (old uuid PRIMARY KEY, new uuid NOT NULL) ON COMMIT DROP
