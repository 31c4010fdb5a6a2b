INSERT INTO ai_audit (tenant_id, endpoint, outcome, detail, duration_ms, created_at)
SELECT $2, r.endpoint, r.outcome, r.detail, r.duration_ms, r.created_at
FROM jsonb_populate_recordset(NULL::ai_audit, $1::text::jsonb) AS r
ORDER BY r.id
