INSERT INTO contact_time_zones (tenant_id, contact, time_zone, updated_at)
SELECT $2, r.contact, r.time_zone, r.updated_at
FROM jsonb_populate_recordset(NULL::contact_time_zones, $1::text::jsonb) AS r
