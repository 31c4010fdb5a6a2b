SELECT to_jsonb(t)::text FROM template_events t WHERE t.tenant_id = $1 ORDER BY t.id
