INSERT INTO contact_windows (tenant_id, contact, last_inbound_at, last_sender_id)
SELECT $2, r.contact, r.last_inbound_at,
       (SELECT s.new FROM pg_temp.flomastr_restore_senders s WHERE s.old = r.last_sender_id)
FROM jsonb_populate_recordset(NULL::contact_windows, $1::text::jsonb) AS r
