-- Completes many leased jobs at once; a row changes only when its lease token still matches.
-- The tenants are told (NOTIFY) in the same statement: a conversation's next job may be runnable.
WITH done AS (
    UPDATE jobs j
    SET status = 'completed', lease_token = NULL, lease_expires_at = NULL, last_error = NULL,
        updated_at = now()
    FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS c(id, token, tenant_id)
    WHERE j.id = c.id AND j.lease_token = c.token AND j.tenant_id = c.tenant_id
      AND j.status = 'processing'
    RETURNING j.id, c.token, j.tenant_id
), told AS (
    SELECT pg_notify('flomastr_jobs', string_agg(DISTINCT tenant_id::text, ',')) FROM done
    HAVING count(*) > 0
)
SELECT id, token FROM done LEFT JOIN (SELECT count(*) AS n FROM told) t ON true
