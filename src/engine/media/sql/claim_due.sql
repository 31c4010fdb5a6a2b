-- Takes up to $1 due pending media rows for download, oldest first. The next try is pushed out
-- by the lease ($2 seconds), so a crash mid-download retries later; SKIP LOCKED: two fetchers
-- (or replicas) claiming at once take different rows, and no row is downloaded twice at once.
UPDATE media m
SET attempts = m.attempts + 1, next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
FROM tenants t
WHERE (m.tenant_id, m.id) IN (
        SELECT d.tenant_id, d.id FROM media d
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
        ORDER BY d.next_attempt_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED)
  AND m.status = 'pending' AND m.next_attempt_at <= now()
  AND t.id = m.tenant_id
RETURNING m.tenant_id, m.id, t.slug, m.sender_id, m.provider, m.provider_ref, m.declared_type,
          m.attempts, t.media_max_bytes
