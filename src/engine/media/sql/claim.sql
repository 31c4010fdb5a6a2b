-- Takes a due pending media row for one download: the next try is pushed out by the lease, so
-- a crash mid-download retries later and two fetchers (or replicas) never download it at once.
UPDATE media m
SET attempts = m.attempts + 1, next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
FROM tenants t
WHERE m.tenant_id = $1 AND m.id = $2 AND m.status = 'pending' AND m.next_attempt_at <= now()
  AND t.id = m.tenant_id
RETURNING t.slug, m.sender_id, m.provider, m.provider_ref, m.declared_type, m.attempts, t.media_max_bytes
