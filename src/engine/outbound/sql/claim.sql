-- Due messages for this replica, in fair turns between tenants: each tenant with due messages
-- gets at most its room (the per-tenant cap minus its sends in flight on this replica), and the
-- picks are interleaved (every tenant's first, then every tenant's second, ...) up to the free
-- slots, so a tenant with a large backlog never pushes a quiet tenant's message back.
-- SKIP LOCKED lets several engine replicas share the work.
-- $1 free slots, $2 claim seconds, $3 per-tenant cap, $4/$5 tenants with sends in flight here
-- and how many each has.
WITH RECURSIVE queued_tenants AS (
    -- A loose index scan: one probe of outbound_queued_by_tenant per tenant with queued messages.
    (SELECT tenant_id FROM outbound_messages WHERE status = 'queued' ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT m.tenant_id FROM outbound_messages m
            WHERE m.status = 'queued' AND m.tenant_id > q.tenant_id
            ORDER BY m.tenant_id LIMIT 1)
    FROM queued_tenants q
    WHERE q.tenant_id IS NOT NULL
), rooms AS (
    SELECT q.tenant_id, LEAST($3 - COALESCE(b.in_flight, 0), $1) AS room
    FROM queued_tenants q
    LEFT JOIN UNNEST($4::uuid[], $5::int[]) AS b (tenant_id, in_flight) ON b.tenant_id = q.tenant_id
    WHERE q.tenant_id IS NOT NULL
), picked AS (
    SELECT p.id, p.next_attempt_at,
           row_number() OVER (PARTITION BY r.tenant_id ORDER BY p.next_attempt_at) AS turn
    FROM rooms r
    CROSS JOIN LATERAL (
        SELECT m.id, m.next_attempt_at FROM outbound_messages m
        WHERE m.tenant_id = r.tenant_id AND m.status = 'queued' AND m.next_attempt_at <= now()
        ORDER BY m.next_attempt_at
        LIMIT r.room
        FOR UPDATE SKIP LOCKED
    ) p
    WHERE r.room > 0
)
UPDATE outbound_messages m
SET status = 'sending', attempts = m.attempts + 1,
    claimed_until = now() + make_interval(secs => $2), updated_at = now()
FROM tenants t
WHERE m.id IN (SELECT id FROM picked ORDER BY turn, next_attempt_at LIMIT $1)
  AND t.id = m.tenant_id
RETURNING m.id, m.tenant_id, t.slug, m.recipient, m.content, m.reply_to, m.attempts, m.sender_id,
    -- The contact opted out since the message was queued (a confirmation of a recent opt-out
    -- still goes out).
    COALESCE((SELECT c.state = 'opted_out'
                     AND NOT (m.opt_out_confirmation AND c.updated_at > now() - interval '24 hours')
              FROM contact_consent c WHERE c.tenant_id = m.tenant_id AND c.contact = m.recipient), false)
        AS opted_out,
    -- Quiet hours: until when a utility or marketing message must wait now, and when it expires.
    m.expires_at,
    (SELECT h.hold_until FROM flomastr_hold(m.tenant_id, m.recipient, m.category, now()) h) AS hold_until,
    (SELECT COALESCE(m.expires_at, now() + h.max_hold)
     FROM flomastr_hold(m.tenant_id, m.recipient, m.category, now()) h) AS hold_expires_at
