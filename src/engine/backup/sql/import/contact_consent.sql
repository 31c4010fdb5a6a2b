-- event_id names the restored event that set the state (0 when the archive lacks it).
INSERT INTO contact_consent (tenant_id, contact, state, event_id, updated_at)
SELECT $2, r.contact, r.state,
       COALESCE((SELECT e.new FROM pg_temp.flomastr_restore_events e WHERE e.old = r.event_id), 0),
       r.updated_at
FROM jsonb_populate_recordset(NULL::contact_consent, $1::text::jsonb) AS r
