INSERT INTO blocked_conversations (tenant_id, conversation_key, job_id, blocked_at)
SELECT $2, r.conversation_key, flomastr_restored_id(r.job_id, $3), r.blocked_at
FROM jsonb_populate_recordset(NULL::blocked_conversations, $1::text::jsonb) AS r
