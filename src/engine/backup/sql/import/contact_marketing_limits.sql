INSERT INTO contact_marketing_limits (tenant_id, contact, limited_until, hits, updated_at)
SELECT $2, r.contact, r.limited_until, r.hits, r.updated_at
FROM jsonb_populate_recordset(NULL::contact_marketing_limits, $1::text::jsonb) AS r
