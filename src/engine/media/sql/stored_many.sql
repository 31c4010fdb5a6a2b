-- Downloads that succeeded, many in one statement: each file's bytes into its row (or the
-- object store's key, $7), and each job's payload told (status, type, size and SHA-256 of its
-- media[position]; all of one job's files in one update of the job). Returns the files whose
-- rows are gone (their jobs deleted by the retention while they downloaded): the objects just
-- put for them must go too. (A row another fetcher stored first exists: its object, under the
-- same key, stays.)
WITH input AS (
    SELECT *
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::bytea[], $7::text[])
        AS i(tenant_id, id, content_type, sha256, size, bytes, object_key)
), stored AS (
    UPDATE media m
    SET status = 'stored', content_type = i.content_type, sha256 = i.sha256, size = i.size,
        bytes = i.bytes, object_key = i.object_key, error = NULL, updated_at = now()
    FROM input i
    WHERE m.tenant_id = i.tenant_id AND m.id = i.id AND m.status = 'pending'
    RETURNING m.job_id, m.position, i.content_type, i.sha256, i.size
), per_job AS (
    SELECT s.job_id,
           jsonb_object_agg(s.position::text, jsonb_build_object(
               'status', 'stored', 'content_type', s.content_type, 'sha256', s.sha256, 'size', s.size)) AS told
    FROM stored s
    WHERE s.job_id IS NOT NULL
    GROUP BY s.job_id
), told AS (
    UPDATE jobs j
    SET payload = jsonb_set(j.payload, '{media}', COALESCE((
        SELECT jsonb_agg(CASE WHEN jsonb_typeof(e.entry) = 'object' AND p.told ? (e.ord - 1)::text
                              THEN (e.entry - 'error') || (p.told -> (e.ord - 1)::text)
                              ELSE e.entry END
                         ORDER BY e.ord)
        FROM jsonb_array_elements(j.payload->'media') WITH ORDINALITY AS e(entry, ord)
    ), j.payload->'media'))
    FROM per_job p
    WHERE j.id = p.job_id AND jsonb_typeof(j.payload->'media') = 'array'
    RETURNING 1
)
SELECT i.tenant_id, i.id
FROM input i
WHERE NOT EXISTS (SELECT 1 FROM media m WHERE m.tenant_id = i.tenant_id AND m.id = i.id)
