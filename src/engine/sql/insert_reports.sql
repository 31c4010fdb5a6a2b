-- Provider reports about messages we sent; a repeated report is stored once.
INSERT INTO status_reports (tenant_id, provider, provider_message_id, status, provider_status,
                            occurred_at, error_code, error_message, permanent, raw)
SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[], $7::text[], $8::text[], $9::bool[], $10::jsonb[])
ON CONFLICT (tenant_id, provider, provider_message_id, status, provider_status) DO NOTHING
