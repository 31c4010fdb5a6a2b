SELECT to_jsonb(t)::text FROM contact_time_zones t WHERE t.tenant_id = $1 ORDER BY t.contact
