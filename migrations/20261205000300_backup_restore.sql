-- Tenant backups (POST /admin/tenants/{slug}/backup and /restore). A backup restored beside the
-- tenant it came from (a new slug in the same database) cannot keep its rows' ids: each restored
-- id is derived from the old one and a salt (the new tenant's id), so the same old id always
-- becomes the same new one and references between restored rows hold. Without a salt (the
-- tenant is restored under its own id) ids are kept.
CREATE FUNCTION flomastr_restored_id(p_id uuid, p_salt uuid) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_salt IS NULL THEN p_id ELSE md5(p_salt::text || p_id::text)::uuid END
$$;
