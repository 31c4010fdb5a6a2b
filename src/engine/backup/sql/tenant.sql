-- The archive's header: the tenant's settings and its senders (ids and addresses only: a
-- restore maps references to senders by address; credentials are not archived).
SELECT t.id, t.slug, t.display_name, t.status, t.max_attempts, t.max_concurrency, t.created_at,
       COALESCE((SELECT jsonb_agg(jsonb_build_object('id', c.id, 'provider', c.provider,
                                                     'address', c.address) ORDER BY c.ordinal)
                 FROM channels c WHERE c.tenant_id = t.id), '[]') AS senders,
       (SELECT max(version) FROM _sqlx_migrations WHERE success) AS schema_version
FROM tenants t WHERE t.slug = $1
