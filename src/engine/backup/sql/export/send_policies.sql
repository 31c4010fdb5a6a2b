SELECT to_jsonb(t)::text FROM send_policies t WHERE t.tenant_id = $1
