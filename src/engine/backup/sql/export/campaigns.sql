SELECT to_jsonb(t)::text FROM campaigns t WHERE t.tenant_id = $1 ORDER BY t.created_at, t.id
