-- The media rows of newly stored jobs (one per payload media[] entry naming the file at the
-- provider; the ids are the payloads', so the worker's payload and the rows agree).
INSERT INTO media (tenant_id, id, job_id, position, sender_id, provider, kind, provider_ref, declared_type)
SELECT *
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[])
ON CONFLICT DO NOTHING
RETURNING tenant_id, id
