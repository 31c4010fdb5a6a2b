-- The tenant's files: those of the archived jobs, and uploads (no job) not yet expired. A file
-- kept in the object store gets its bytes added to its row as the row streams (export.rs).
SELECT to_jsonb(m)::text FROM media m
LEFT JOIN jobs j ON j.id = m.job_id
WHERE m.tenant_id = $1
  AND (j.status <> 'completed' OR (m.job_id IS NULL AND (m.expires_at IS NULL OR m.expires_at > now())))
ORDER BY m.created_at, m.id
