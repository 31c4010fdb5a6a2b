-- All chunks of one document in one statement (arrays in chunk order).
INSERT INTO kb_chunks (tenant_id, document_id, chunk_index, content, char_start, char_end,
                       embedding_model, embedding)
SELECT $1, $2, u.ord - 1, u.content, u.char_start, u.char_end, $3, u.embedding
FROM UNNEST($4::text[], $5::int[], $6::int[], $7::vector[])
     WITH ORDINALITY AS u(content, char_start, char_end, embedding, ord)
