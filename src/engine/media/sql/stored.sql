-- A download that succeeded: the bytes into the row (or the object store's key, $7), and the job's payload told (status, type,
-- size and SHA-256 of its media[position]). Returns whether the row still exists: when it went
-- meanwhile (its job deleted by the retention), the object just put must go too. (A row another
-- fetcher stored first exists: its object, under the same key, stays.)
WITH stored AS (
    UPDATE media
    SET status = 'stored', content_type = $3, sha256 = $4, size = $5, bytes = $6, object_key = $7, error = NULL,
        updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND status = 'pending'
    RETURNING job_id, position
), told AS (
UPDATE jobs j
SET payload = jsonb_set(j.payload, ARRAY['media', s.position::text],
        (j.payload->'media'->s.position) - 'error'
        || jsonb_build_object('status', 'stored', 'content_type', $3::text, 'sha256', $4::text, 'size', $5::bigint))
FROM stored s
WHERE j.id = s.job_id AND jsonb_typeof(j.payload->'media'->s.position) = 'object'
RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM media WHERE tenant_id = $1 AND id = $2)
