SELECT to_jsonb(t)::text FROM kb_chunks t WHERE t.tenant_id = $1 ORDER BY t.id
