SELECT to_jsonb(t)::text FROM outbound_messages t WHERE t.tenant_id = $1 ORDER BY t.created_at, t.id
