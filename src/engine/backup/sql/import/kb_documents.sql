INSERT INTO kb_documents (id, tenant_id, title, format, sha256, created_at)
SELECT flomastr_restored_id(r.id, $3), $2, r.title, r.format, r.sha256, r.created_at
FROM jsonb_populate_recordset(NULL::kb_documents, $1::text::jsonb) AS r
