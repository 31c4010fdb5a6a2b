SELECT to_jsonb(t)::text FROM contact_windows t WHERE t.tenant_id = $1 ORDER BY t.contact
