-- $2 is the tenant: only into its own runs.
INSERT INTO campaign_recipients (run_id, contact, state, reason, message_id, updated_at)
SELECT run.id, r.contact, r.state, r.reason, flomastr_restored_id(r.message_id, $3), r.updated_at
FROM jsonb_populate_recordset(NULL::campaign_recipients, $1::text::jsonb) AS r
JOIN campaign_runs run ON run.id = flomastr_restored_id(r.run_id, $3) AND run.tenant_id = $2
