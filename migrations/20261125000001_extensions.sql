-- pgvector holds the tenants' knowledge embeddings.
CREATE EXTENSION IF NOT EXISTS vector;
