SELECT to_jsonb(t)::text FROM ai_memory t WHERE t.tenant_id = $1 ORDER BY t.contact, t.turn_no
