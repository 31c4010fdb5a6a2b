-- When a tenant's worker (its n8n) last asked for a job: the operator's WorkflowReady condition
-- reads it through the admin API. Written at most every few seconds per tenant (see queue polls).
ALTER TABLE tenants ADD COLUMN last_worker_seen_at timestamptz;
