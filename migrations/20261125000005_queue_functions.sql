-- The claim is one round trip and one commit: it runs often, under load, and must be atomic.
--
-- flomastr_claim(tenant, n, lease, cap) leases up to n jobs of one tenant, each the head of its
-- conversation (nothing earlier queued and nothing in flight in that conversation, and the
-- conversation not blocked by a dead job), never taking the tenant over `cap` jobs in flight.
-- Claims of one tenant are serialised with a transaction advisory lock, so two engine replicas
-- can never hand out two jobs of one conversation; other tenants are not affected.
-- The commit is asynchronous: a claim lost in a crash only means the job is delivered again.
CREATE FUNCTION flomastr_claim(p_tenant uuid, p_limit integer, p_lease_seconds double precision, p_cap integer)
RETURNS TABLE (id uuid, payload jsonb, attempts integer, max_attempts integer, lease_token uuid,
               lease_expires_at timestamptz, runnable_since timestamptz, conversation_key text)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(hashtextextended('flomastr_claim:' || p_tenant::text, 0));
    RETURN QUERY
    WITH capacity AS (
        SELECT GREATEST(LEAST(p_limit, p_cap - count(*)::integer), 0) AS n
        FROM jobs f WHERE f.tenant_id = p_tenant AND f.status = 'processing'
    ), candidates AS (
        SELECT j.id FROM jobs j
        WHERE j.tenant_id = p_tenant AND j.status = 'queued' AND j.run_after <= now()
          -- Nothing earlier waiting in its conversation (an index range probe, stops at one row) ...
          AND NOT EXISTS (
              SELECT 1 FROM jobs p
              WHERE p.tenant_id = p_tenant AND p.conversation_key = j.conversation_key
                AND p.status IN ('queued', 'processing')
                AND (p.provider_timestamp, p.seq) < (j.provider_timestamp, j.seq))
          -- ... and nothing of its conversation in flight, even a later message delivered earlier.
          AND NOT EXISTS (
              SELECT 1 FROM jobs f
              WHERE f.tenant_id = p_tenant AND f.conversation_key = j.conversation_key
                AND f.status = 'processing')
          AND NOT EXISTS (
              SELECT 1 FROM blocked_conversations b
              WHERE b.tenant_id = p_tenant AND b.conversation_key = j.conversation_key)
        ORDER BY j.priority DESC, j.provider_timestamp, j.seq
        LIMIT (SELECT n FROM capacity)
    )
    UPDATE jobs j
    SET status = 'processing', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
        lease_expires_at = now() + make_interval(secs => p_lease_seconds), updated_at = now()
    -- An id array, not a join: the planner cannot know how few candidates there are and would
    -- otherwise scan the whole table to hash-join them.
    WHERE j.id = ANY (ARRAY(SELECT c.id FROM candidates c))
    RETURNING j.id, j.payload, j.attempts, j.max_attempts, j.lease_token, j.lease_expires_at,
              GREATEST(j.created_at, j.run_after), j.conversation_key;
END
$$;

-- In-flight jobs by conversation: tiny (at most the tenants' concurrency caps), probed per candidate.
CREATE INDEX jobs_conversation_in_flight ON jobs (tenant_id, conversation_key) WHERE status = 'processing';

-- Retried jobs waiting for their backoff: the reaper wakes their tenants when the time comes.
CREATE INDEX jobs_retry_due ON jobs (run_after) WHERE status = 'queued' AND attempts > 0;
