INSERT INTO campaign_runs (id, campaign_id, tenant_id, scheduled_for, state, planned,
                           next_batch_at, started_at, finished_at)
SELECT flomastr_restored_id(r.id, $3), flomastr_restored_id(r.campaign_id, $3), $2,
       r.scheduled_for, r.state, r.planned, r.next_batch_at, r.started_at, r.finished_at
FROM jsonb_populate_recordset(NULL::campaign_runs, $1::text::jsonb) AS r
