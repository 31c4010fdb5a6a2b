INSERT INTO message_templates (tenant_id, name, language, category, status, body, variables,
                               updated_at, quality, status_reason, provider_template_id)
SELECT $2, r.name, r.language, r.category, r.status, r.body, r.variables, r.updated_at,
       r.quality, r.status_reason, r.provider_template_id
FROM jsonb_populate_recordset(NULL::message_templates, $1::text::jsonb) AS r
