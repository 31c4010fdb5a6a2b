-- A batch's messages in one statement, so a batch of plain messages commits in one round trip:
-- - the jobs, in submission order (seq follows ordinality), skipping any (tenant, dedup key)
--   already stored: a provider's redelivery never makes a second job;
-- - each message (re)opens its contact's 24-hour window, and the sender of the contact's
--   latest message becomes the contact's default sender (a message without one keeps it);
-- - the media rows of the jobs that are new (the ids are chosen before the statement, so the
--   media rows name their job; a redelivered message's rows are left out with its job);
-- - the tenants that got new jobs are told on the jobs channel (delivered at commit), at most
--   200 ids a notification (NOTIFY's payload limit is 8000 bytes).
-- $1 job ids, $2 tenants, $3 payloads, $4 conversations, $5 dedup keys, $6 provider timestamps,
-- $7 max attempts, $8 contacts (normalized), $9 window times, $10 senders, $11 the channel;
-- media rows: $12 tenants, $13 ids, $14 job ids, $15 positions, $16 senders, $17 providers,
-- $18 kinds, $19 provider references, $20 declared types.
WITH inserted AS (
    INSERT INTO jobs (id, tenant_id, payload, conversation_key, dedup_key, provider_timestamp, max_attempts)
    SELECT id, tenant_id, payload, conversation_key, dedup_key, provider_timestamp, max_attempts
    FROM UNNEST($1::uuid[], $2::uuid[], $3::jsonb[], $4::text[], $5::text[], $6::timestamptz[], $7::int[])
         WITH ORDINALITY AS j(id, tenant_id, payload, conversation_key, dedup_key, provider_timestamp, max_attempts, ord)
    ORDER BY ord
    ON CONFLICT (tenant_id, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
    RETURNING tenant_id, dedup_key, id
), windows AS (
    INSERT INTO contact_windows (tenant_id, contact, last_inbound_at, last_sender_id)
    SELECT DISTINCT ON (tenant_id, contact) tenant_id, contact, at, sender_id
    FROM UNNEST($2::uuid[], $8::text[], $9::timestamptz[], $10::uuid[]) AS w(tenant_id, contact, at, sender_id)
    -- One lock order for every writer: concurrent batches cannot deadlock.
    ORDER BY tenant_id, contact, at DESC
    ON CONFLICT (tenant_id, contact) DO UPDATE
    SET last_inbound_at = GREATEST(contact_windows.last_inbound_at, EXCLUDED.last_inbound_at),
        last_sender_id = CASE WHEN EXCLUDED.last_inbound_at >= contact_windows.last_inbound_at
                              THEN COALESCE(EXCLUDED.last_sender_id, contact_windows.last_sender_id)
                              ELSE contact_windows.last_sender_id END
), told AS (
    SELECT pg_notify($11, string_agg(tenant_id::text, ','))
    FROM (SELECT tenant_id, (row_number() OVER (ORDER BY tenant_id) - 1) / 200 AS chunk
          FROM (SELECT DISTINCT tenant_id FROM inserted) AS t) AS numbered
    GROUP BY chunk
), new_media AS (
    INSERT INTO media (tenant_id, id, job_id, position, sender_id, provider, kind, provider_ref, declared_type)
    SELECT m.tenant_id, m.id, m.job_id, m.position, m.sender_id, m.provider, m.kind, m.provider_ref, m.declared_type
    FROM UNNEST($12::uuid[], $13::uuid[], $14::uuid[], $15::int[], $16::uuid[], $17::text[], $18::text[],
                $19::text[], $20::text[])
         AS m(tenant_id, id, job_id, position, sender_id, provider, kind, provider_ref, declared_type)
    JOIN inserted ON inserted.id = m.job_id
    ON CONFLICT DO NOTHING
    RETURNING tenant_id, id
)
-- The new jobs (with their dedup keys), then the new media rows (without). `told` is read
-- here, or the planner would leave it out and nobody would be told.
SELECT tenant_id, dedup_key, id, (SELECT count(*) FROM told) AS notifications FROM inserted
UNION ALL
SELECT tenant_id, NULL, id, 0 FROM new_media
