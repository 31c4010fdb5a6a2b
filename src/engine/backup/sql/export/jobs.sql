-- Jobs not yet done: queued, in flight and dead-lettered (completed jobs are history the
-- retention removes anyway). In conversation order.
SELECT to_jsonb(t)::text FROM jobs t
WHERE t.tenant_id = $1 AND t.status <> 'completed'
ORDER BY t.provider_timestamp, t.seq
