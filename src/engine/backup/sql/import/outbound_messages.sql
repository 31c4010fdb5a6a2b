-- The sender is the target tenant's sender with the same provider and address, else none (the
-- tenant's first sender).
INSERT INTO outbound_messages (id, tenant_id, idempotency_key, request_sha256, recipient, content,
                               reply_to, status, provider, provider_message_id, attempts,
                               next_attempt_at, claimed_until, error_code, error_message,
                               created_at, updated_at, category, expires_at,
                               opt_out_confirmation, sender_id)
SELECT flomastr_restored_id(r.id, $3), $2, r.idempotency_key, r.request_sha256, r.recipient,
       r.content, r.reply_to, r.status, r.provider, r.provider_message_id, r.attempts,
       r.next_attempt_at, r.claimed_until, r.error_code, r.error_message, r.created_at,
       r.updated_at, r.category, r.expires_at, r.opt_out_confirmation,
       (SELECT s.new FROM pg_temp.flomastr_restore_senders s WHERE s.old = r.sender_id)
FROM jsonb_populate_recordset(NULL::outbound_messages, $1::text::jsonb) AS r
