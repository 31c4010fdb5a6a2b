INSERT INTO campaign_segments (tenant_id, name, contacts, updated_at)
SELECT $2, r.name, r.contacts, r.updated_at
FROM jsonb_populate_recordset(NULL::campaign_segments, $1::text::jsonb) AS r
