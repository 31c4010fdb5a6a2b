-- A worker reports failure. With attempts left the job is queued again after an exponential
-- backoff with jitter (1 s, 2 s, 4 s, ... capped at 1 h, each between 50% and 100% of that),
-- or after the delay the worker asked for. Out of attempts it is dead-lettered and its
-- conversation is blocked (later messages keep their order and wait) until an admin releases it.
-- A permanent failure ($6: the worker says no retry can succeed) is dead at once and blocks
-- nothing: releasing it could never help, and the customer's next message deserves an answer.
-- Either way a slot under the tenant's cap is free, and a permanent failure unblocks the
-- conversation's next message: other replicas are told (failures are rare: no check of need).
WITH failed AS (
    UPDATE jobs
    SET status = CASE WHEN $6 OR attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
        run_after = CASE
            WHEN $6 OR attempts >= max_attempts THEN run_after
            WHEN $5::double precision IS NOT NULL THEN now() + make_interval(secs => $5)
            ELSE now() + make_interval(secs => LEAST(3600, power(2, LEAST(attempts - 1, 20)))
                                                * (0.5 + random() * 0.5))
        END,
        lease_token = NULL, lease_expires_at = NULL, last_error = left($4, 2000), updated_at = now()
    WHERE id = $1 AND tenant_id = $2 AND lease_token = $3 AND status = 'processing'
    RETURNING id, tenant_id, conversation_key, status, run_after
), blocked AS (
    INSERT INTO blocked_conversations (tenant_id, conversation_key, job_id)
    SELECT tenant_id, conversation_key, id FROM failed WHERE status = 'dead' AND NOT $6
    ON CONFLICT DO NOTHING
), told AS (
    SELECT pg_notify('flomastr_jobs', tenant_id::text) FROM failed
)
-- `notified` is read so that `told` runs: a CTE nobody reads is never evaluated.
SELECT status, run_after, (SELECT count(*) FROM told) AS notified FROM failed
