-- Everything a restore replaces; the registration (tenant row, worker tokens, senders, AI
-- settings) stays. Children go with their parents (ON DELETE CASCADE). Returns the object keys of
-- the media files deleted (their objects go once the restore committed, unless restored rows
-- name them again).
WITH jobs_gone AS (DELETE FROM jobs WHERE tenant_id = $1),
     media_gone AS (DELETE FROM media WHERE tenant_id = $1 RETURNING object_key),
     blocked_gone AS (DELETE FROM blocked_conversations WHERE tenant_id = $1),
     reports_gone AS (DELETE FROM status_reports WHERE tenant_id = $1),
     outbound_gone AS (DELETE FROM outbound_messages WHERE tenant_id = $1),
     windows_gone AS (DELETE FROM contact_windows WHERE tenant_id = $1),
     documents_gone AS (DELETE FROM kb_documents WHERE tenant_id = $1),
     chunks_gone AS (DELETE FROM kb_chunks WHERE tenant_id = $1),
     memory_gone AS (DELETE FROM ai_memory WHERE tenant_id = $1),
     usage_gone AS (DELETE FROM ai_usage WHERE tenant_id = $1),
     audit_gone AS (DELETE FROM ai_audit WHERE tenant_id = $1),
     templates_gone AS (DELETE FROM message_templates WHERE tenant_id = $1),
     template_events_gone AS (DELETE FROM template_events WHERE tenant_id = $1),
     policies_gone AS (DELETE FROM send_policies WHERE tenant_id = $1),
     zones_gone AS (DELETE FROM contact_time_zones WHERE tenant_id = $1),
     limits_gone AS (DELETE FROM contact_marketing_limits WHERE tenant_id = $1),
     consent_gone AS (DELETE FROM contact_consent WHERE tenant_id = $1),
     consent_events_gone AS (DELETE FROM consent_events WHERE tenant_id = $1),
     segments_gone AS (DELETE FROM campaign_segments WHERE tenant_id = $1),
     runs_gone AS (DELETE FROM campaign_runs WHERE tenant_id = $1),
     campaigns_gone AS (DELETE FROM campaigns WHERE tenant_id = $1)
SELECT ARRAY(SELECT object_key FROM media_gone WHERE object_key IS NOT NULL)
