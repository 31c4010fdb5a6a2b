INSERT INTO send_policies (tenant_id, opt_out_keywords, opt_in_keywords, updated_at, time_zone,
                           quiet_start, quiet_end, max_hold_seconds, marketing_cap,
                           marketing_cap_seconds)
SELECT $2, r.opt_out_keywords, r.opt_in_keywords, r.updated_at, r.time_zone, r.quiet_start,
       r.quiet_end, r.max_hold_seconds, r.marketing_cap, r.marketing_cap_seconds
FROM jsonb_populate_recordset(NULL::send_policies, $1::text::jsonb) AS r
