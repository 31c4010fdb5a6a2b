INSERT INTO campaigns (id, tenant_id, name, state, audience, template_name, template_language,
                       template_params, category, schedule_kind, run_at, weekly_day, weekly_time,
                       time_zone, per_minute, next_run_at, paused_reason, created_at, updated_at,
                       brief, content_language)
SELECT flomastr_restored_id(r.id, $3), $2, r.name, r.state, r.audience, r.template_name,
       r.template_language, r.template_params, r.category, r.schedule_kind, r.run_at,
       r.weekly_day, r.weekly_time, r.time_zone, r.per_minute, r.next_run_at, r.paused_reason,
       r.created_at, r.updated_at, r.brief, r.content_language
FROM jsonb_populate_recordset(NULL::campaigns, $1::text::jsonb) AS r
