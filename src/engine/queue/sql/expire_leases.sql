-- Leases past their expiry go back to the queue; a job out of attempts (it keeps killing or
-- hanging its workers) is dead-lettered instead and blocks its conversation, like a failure.
WITH expired AS (
    SELECT id FROM jobs
    WHERE status = 'processing' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT 1000
    FOR UPDATE SKIP LOCKED
), returned AS (
    UPDATE jobs j
    SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
        lease_token = NULL, lease_expires_at = NULL, run_after = now(),
        last_error = 'lease expired without completion', updated_at = now()
    FROM expired e
    WHERE j.id = e.id
    RETURNING j.id, j.tenant_id, j.conversation_key, j.status
), blocked AS (
    INSERT INTO blocked_conversations (tenant_id, conversation_key, job_id)
    SELECT tenant_id, conversation_key, id FROM returned WHERE status = 'dead'
    ON CONFLICT DO NOTHING
)
SELECT tenant_id, status FROM returned
