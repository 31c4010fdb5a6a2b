SELECT to_jsonb(t)::text FROM ai_audit t WHERE t.tenant_id = $1 ORDER BY t.id
