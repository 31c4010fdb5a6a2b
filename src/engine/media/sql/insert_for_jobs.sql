-- The media rows of newly stored jobs, read from their payloads' media[] (ids chosen before
-- the commit, so the worker's payload and the rows agree).
INSERT INTO media (tenant_id, id, job_id, position, sender_id, provider, kind, provider_ref, declared_type)
SELECT j.tenant_id, (m.entry->>'id')::uuid, j.id, (m.ord - 1)::int,
       (j.payload->'sender'->>'id')::uuid, j.payload->>'provider', m.entry->>'kind',
       COALESCE(m.entry->>'provider_media_id', m.entry->>'provider_url'), m.entry->>'mime_type'
FROM jobs j
CROSS JOIN LATERAL jsonb_array_elements(j.payload->'media') WITH ORDINALITY AS m(entry, ord)
WHERE j.id = ANY($1) AND jsonb_typeof(j.payload->'media') = 'array'
  AND COALESCE(m.entry->>'provider_media_id', m.entry->>'provider_url') IS NOT NULL
ON CONFLICT DO NOTHING
RETURNING tenant_id, id
