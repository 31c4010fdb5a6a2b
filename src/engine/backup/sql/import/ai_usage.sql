INSERT INTO ai_usage (tenant_id, endpoint, model, prompt_tokens, completion_tokens, estimated, created_at)
SELECT $2, r.endpoint, r.model, r.prompt_tokens, r.completion_tokens, r.estimated, r.created_at
FROM jsonb_populate_recordset(NULL::ai_usage, $1::text::jsonb) AS r
ORDER BY r.id
