SELECT to_jsonb(t)::text FROM blocked_conversations t WHERE t.tenant_id = $1 ORDER BY t.conversation_key
