-- A download that failed: `failed` for good, or still `pending` with its next try due after
-- the backoff. The job's payload shows the status and the last error either way.
WITH changed AS (
    UPDATE media
    SET status = $3, error = $4, next_attempt_at = now() + make_interval(secs => $5), updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND status = 'pending'
    RETURNING job_id, position
)
UPDATE jobs j
SET payload = jsonb_set(j.payload, ARRAY['media', c.position::text],
        (j.payload->'media'->c.position) || jsonb_build_object('status', $3::text, 'error', $4::text))
FROM changed c
WHERE j.id = c.job_id AND jsonb_typeof(j.payload->'media'->c.position) = 'object'
