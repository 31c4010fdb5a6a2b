-- Recipients belong to the tenant through their run.
SELECT to_jsonb(c)::text FROM campaign_recipients c
JOIN campaign_runs r ON r.id = c.run_id
WHERE r.tenant_id = $1
ORDER BY c.run_id, c.contact
