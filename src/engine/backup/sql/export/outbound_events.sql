-- Events belong to the tenant through their message.
SELECT to_jsonb(e)::text FROM outbound_events e
JOIN outbound_messages m ON m.id = e.message_id
WHERE m.tenant_id = $1
ORDER BY e.id
