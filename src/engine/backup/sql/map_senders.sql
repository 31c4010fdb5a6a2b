-- The archive's senders ($1: [{id, provider, address}]) to the target's senders of the same
-- provider and address.
INSERT INTO pg_temp.flomastr_restore_senders (old, new)
SELECT s.id, c.id
FROM jsonb_to_recordset($1::text::jsonb) AS s(id uuid, provider text, address text)
JOIN channels c ON c.tenant_id = $2 AND c.provider = s.provider AND c.address = s.address
