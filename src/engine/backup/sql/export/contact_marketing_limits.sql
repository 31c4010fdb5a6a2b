SELECT to_jsonb(t)::text FROM contact_marketing_limits t WHERE t.tenant_id = $1 ORDER BY t.contact
