-- Many jobs in one statement, in submission order (seq follows ordinality), skipping any
-- (tenant, dedup key) already stored: a provider's redelivery never makes a second job.
INSERT INTO jobs (tenant_id, payload, conversation_key, dedup_key, provider_timestamp, max_attempts)
SELECT tenant_id, payload, conversation_key, dedup_key, provider_timestamp, max_attempts
FROM UNNEST($1::uuid[], $2::jsonb[], $3::text[], $4::text[], $5::timestamptz[], $6::int[])
     WITH ORDINALITY AS j(tenant_id, payload, conversation_key, dedup_key, provider_timestamp, max_attempts, ord)
ORDER BY ord
ON CONFLICT (tenant_id, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
RETURNING tenant_id, dedup_key, id
