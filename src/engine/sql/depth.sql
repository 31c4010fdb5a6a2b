-- Jobs per tenant and status, and (on the `queued` rows only) since when the tenant's oldest
-- runnable job waits: the moment the claim reports as `runnable_since`. A suspended tenant's
-- jobs are held on purpose (its workers are refused): nothing of it counts as waiting.
SELECT t.slug, j.status, count(*),
       min(GREATEST(j.created_at, j.run_after))
           FILTER (WHERE j.status = 'queued' AND j.run_after <= now() AND t.status = 'active')
FROM jobs j
JOIN tenants t ON t.id = j.tenant_id
GROUP BY t.slug, j.status
