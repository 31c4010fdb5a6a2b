SELECT to_jsonb(t)::text FROM campaign_segments t WHERE t.tenant_id = $1 ORDER BY t.name
