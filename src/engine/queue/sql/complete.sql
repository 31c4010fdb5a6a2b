-- Completes many leased jobs at once; a row changes only when its lease token still matches.
-- Other replicas are told (NOTIFY) about the tenants whose waiting workers these completions may
-- serve: a conversation's next message became runnable, or the tenant was at its cap. Only
-- those: a NOTIFY holds a database-wide lock through the commit's WAL flush, so notifying every
-- completion batch would keep them from sharing flushes. (This replica wakes its own lanes.)
-- Reads of `jobs` below see the table as before the UPDATE: the in-flight count includes the
-- jobs completed here, so `>= max_concurrency` means "was at its cap".
WITH done AS (
    UPDATE jobs j
    SET status = 'completed', lease_token = NULL, lease_expires_at = NULL, last_error = NULL,
        updated_at = now()
    FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS c(id, token, tenant_id)
    WHERE j.id = c.id AND j.lease_token = c.token AND j.tenant_id = c.tenant_id
      AND j.status = 'processing'
    RETURNING j.id, c.token, j.tenant_id, j.conversation_key
), unblocked AS (
    SELECT d.tenant_id FROM done d
    WHERE EXISTS (
        SELECT 1 FROM jobs q
        WHERE q.tenant_id = d.tenant_id AND q.conversation_key = d.conversation_key
          AND q.status = 'queued')
    UNION
    SELECT t.id FROM tenants t
    WHERE t.id IN (SELECT tenant_id FROM done)
      AND (SELECT count(*) FROM jobs f WHERE f.tenant_id = t.id AND f.status = 'processing')
          >= t.max_concurrency
), told AS (
    SELECT pg_notify('flomastr_jobs', string_agg(tenant_id::text, ',')) FROM unblocked
    HAVING count(*) > 0
)
-- `notified` is read so that `told` runs: a CTE nobody reads is never evaluated.
SELECT d.id, d.token, (SELECT count(*) FROM told) AS notified FROM done d
