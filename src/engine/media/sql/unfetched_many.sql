-- Downloads that failed, many in one statement: each `failed` for good ($3), or still `pending`
-- with its next try due after its backoff ($5 seconds). Each job's payload shows the status and
-- the last error (all of one job's files in one update of the job).
WITH input AS (
    SELECT *
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::float8[])
        AS i(tenant_id, id, status, error, retry_seconds)
), changed AS (
    UPDATE media m
    SET status = i.status, error = i.error,
        next_attempt_at = now() + make_interval(secs => i.retry_seconds), updated_at = now()
    FROM input i
    WHERE m.tenant_id = i.tenant_id AND m.id = i.id AND m.status = 'pending'
    RETURNING m.job_id, m.position, i.status, i.error
), per_job AS (
    SELECT c.job_id, jsonb_object_agg(c.position::text, jsonb_build_object('status', c.status, 'error', c.error)) AS told
    FROM changed c
    WHERE c.job_id IS NOT NULL
    GROUP BY c.job_id
)
UPDATE jobs j
SET payload = jsonb_set(j.payload, '{media}', COALESCE((
    SELECT jsonb_agg(CASE WHEN jsonb_typeof(e.entry) = 'object' AND p.told ? (e.ord - 1)::text
                          THEN e.entry || (p.told -> (e.ord - 1)::text)
                          ELSE e.entry END
                     ORDER BY e.ord)
    FROM jsonb_array_elements(j.payload->'media') WITH ORDINALITY AS e(entry, ord)
), j.payload->'media'))
FROM per_job p
WHERE j.id = p.job_id AND jsonb_typeof(j.payload->'media') = 'array'
