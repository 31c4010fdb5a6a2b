-- Due messages for this replica; SKIP LOCKED lets several engine replicas share the work.
UPDATE outbound_messages m
SET status = 'sending', attempts = m.attempts + 1,
    claimed_until = now() + make_interval(secs => $2), updated_at = now()
FROM tenants t
WHERE m.id = ANY (ARRAY(
        SELECT id FROM outbound_messages
        WHERE status = 'queued' AND next_attempt_at <= now()
        ORDER BY next_attempt_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED))
  AND t.id = m.tenant_id
RETURNING m.id, t.slug, m.recipient, m.content, m.reply_to, m.attempts
