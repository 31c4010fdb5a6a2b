-- $2 is the tenant: its own messages only.
INSERT INTO outbound_events (message_id, status, detail, occurred_at)
SELECT m.id, r.status, r.detail, r.occurred_at
FROM jsonb_populate_recordset(NULL::outbound_events, $1::text::jsonb) AS r
JOIN outbound_messages m ON m.id = flomastr_restored_id(r.message_id, $3) AND m.tenant_id = $2
ORDER BY r.id
