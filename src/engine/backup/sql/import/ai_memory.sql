INSERT INTO ai_memory (tenant_id, contact, turn_no, user_text, assistant_text, meta, created_at)
SELECT $2, r.contact, r.turn_no, r.user_text, r.assistant_text, r.meta, r.created_at
FROM jsonb_populate_recordset(NULL::ai_memory, $1::text::jsonb) AS r
