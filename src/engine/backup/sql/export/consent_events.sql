SELECT to_jsonb(t)::text FROM consent_events t WHERE t.tenant_id = $1 ORDER BY t.id
