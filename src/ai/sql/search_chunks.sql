-- Exact cosine search over one tenant's chunks of one embedding model: the btree on
-- (tenant_id, embedding_model) finds the rows, a sort by distance ranks them. No ANN index:
-- pgvector 0.6.2 would filter after the index scan and could return fewer than k.
SELECT c.document_id, d.title, c.chunk_index, c.content, c.char_start, c.char_end,
       1 - (c.embedding <=> $3) AS score
FROM kb_chunks c
JOIN kb_documents d ON d.id = c.document_id AND d.tenant_id = c.tenant_id
WHERE c.tenant_id = $1 AND c.embedding_model = $2
ORDER BY c.embedding <=> $3, c.id
LIMIT $4
