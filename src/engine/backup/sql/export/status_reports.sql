SELECT to_jsonb(t)::text FROM status_reports t WHERE t.tenant_id = $1 ORDER BY t.id
