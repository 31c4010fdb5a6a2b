INSERT INTO template_events (tenant_id, name, language, field, value, reason, source, occurred_at)
SELECT $2, r.name, r.language, r.field, r.value, r.reason, r.source, r.occurred_at
FROM jsonb_populate_recordset(NULL::template_events, $1::text::jsonb) AS r
ORDER BY r.id
