INSERT INTO status_reports (tenant_id, provider, provider_message_id, status, provider_status,
                            occurred_at, error_code, error_message, permanent, raw, received_at)
SELECT $2, r.provider, r.provider_message_id, r.status, r.provider_status, r.occurred_at,
       r.error_code, r.error_message, r.permanent, r.raw, r.received_at
FROM jsonb_populate_recordset(NULL::status_reports, $1::text::jsonb) AS r
ORDER BY r.id
