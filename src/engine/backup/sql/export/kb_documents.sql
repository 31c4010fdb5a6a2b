SELECT to_jsonb(t)::text FROM kb_documents t WHERE t.tenant_id = $1 ORDER BY t.created_at, t.id
