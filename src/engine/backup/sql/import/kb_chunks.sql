INSERT INTO kb_chunks (tenant_id, document_id, chunk_index, content, char_start, char_end,
                       embedding_model, embedding)
SELECT $2, flomastr_restored_id(r.document_id, $3), r.chunk_index, r.content, r.char_start,
       r.char_end, r.embedding_model, r.embedding
FROM jsonb_populate_recordset(NULL::kb_chunks, $1::text::jsonb) AS r
ORDER BY r.id
