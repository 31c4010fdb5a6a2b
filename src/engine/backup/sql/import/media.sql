-- Uploads have no job (job_id NULL stays NULL). A file of the object store arrives here with its
-- key already the target tenant's and its bytes put there (restore_objects.rs), or with its bytes
-- in the row when this engine has no object store. Media ids are the tenant's own (the key is
-- tenant and id) and job payloads name them: kept.
INSERT INTO media (tenant_id, id, job_id, position, sender_id, provider, kind, provider_ref,
                   declared_type, status, content_type, sha256, size, bytes, error, attempts,
                   next_attempt_at, created_at, updated_at, filename, expires_at, object_key)
SELECT $2, r.id, flomastr_restored_id(r.job_id, $3), r.position,
       (SELECT s.new FROM pg_temp.flomastr_restore_senders s WHERE s.old = r.sender_id),
       r.provider, r.kind, r.provider_ref, r.declared_type, r.status, r.content_type, r.sha256,
       r.size, r.bytes, r.error, r.attempts, r.next_attempt_at, r.created_at, r.updated_at,
       r.filename, r.expires_at, r.object_key
FROM jsonb_populate_recordset(NULL::media, $1::text::jsonb) AS r
