-- The restore's target, locked for the restore. A slug not registered yet is created with the
-- archive's settings, under the archived id when that id is free (the tenant restored as it
-- was); the operator registers its tokens and senders later, as for any tenant.
INSERT INTO tenants (id, slug, display_name, status, max_attempts, max_concurrency)
VALUES (CASE WHEN EXISTS (SELECT 1 FROM tenants WHERE id = $1) THEN gen_random_uuid() ELSE $1 END,
        $2, $3, $4, $5, $6)
ON CONFLICT (slug) DO UPDATE SET slug = tenants.slug
RETURNING id, (xmax = 0) AS created
