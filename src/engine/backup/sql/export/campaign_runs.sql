SELECT to_jsonb(t)::text FROM campaign_runs t WHERE t.tenant_id = $1 ORDER BY t.started_at, t.id
