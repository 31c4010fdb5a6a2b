SELECT to_jsonb(t)::text FROM contact_consent t WHERE t.tenant_id = $1 ORDER BY t.contact
