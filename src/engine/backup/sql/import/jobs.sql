-- Inserted in conversation order: new `seq` values keep it.
INSERT INTO jobs (id, tenant_id, payload, status, conversation_key, dedup_key, provider_timestamp,
                  priority, attempts, max_attempts, run_after, lease_token, lease_expires_at,
                  last_error, created_at, updated_at)
SELECT flomastr_restored_id(r.id, $3), $2, r.payload, r.status, r.conversation_key, r.dedup_key,
       r.provider_timestamp, r.priority, r.attempts, r.max_attempts, r.run_after, r.lease_token,
       r.lease_expires_at, r.last_error, r.created_at, r.updated_at
FROM jsonb_populate_recordset(NULL::jobs, $1::text::jsonb) AS r
ORDER BY r.provider_timestamp, r.seq
