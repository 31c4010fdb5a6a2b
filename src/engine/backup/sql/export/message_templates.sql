SELECT to_jsonb(t)::text FROM message_templates t WHERE t.tenant_id = $1 ORDER BY t.name, t.language
