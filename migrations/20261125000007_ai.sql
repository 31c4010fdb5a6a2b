-- The per-tenant AI layer: knowledge (documents, chunks with pgvector embeddings), conversation
-- memory, token usage and the audit trail, the tenant's AI settings, and the views that
-- natural-language queries may read (schema ai_views, read by the NOLOGIN role
-- flomastr_ai_readonly only).
--
-- Row-level security is the backstop on tenant-owned tables: the engine always filters on
-- tenant_id itself and sets app.tenant_id with set_config(..., true) inside its transactions.
-- nullif(): once a transaction-local setting ends, the session keeps '' (not NULL), and ''::uuid
-- would raise instead of matching nothing.

-- A tenant's AI settings, written by the admin API (PUT /admin/tenants/{slug}, `ai` object).
CREATE TABLE tenant_ai_settings (
    tenant_id             uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- NULL: the engine's defaults.
    chat_model            text CHECK (length(chat_model) BETWEEN 1 AND 200),
    embedding_model       text CHECK (length(embedding_model) BETWEEN 1 AND 200),
    -- NULL: no budget. Counted over the calendar month (UTC).
    monthly_token_budget  bigint CHECK (monthly_token_budget >= 0),
    requests_per_minute   integer CHECK (requests_per_minute BETWEEN 1 AND 100000),
    -- Views of ai_views the tenant declared for natural-language queries.
    data_views            text[] NOT NULL DEFAULT '{}',
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- One row per ingested document; the same text twice (sha256) is stored once per tenant.
CREATE TABLE kb_documents (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    format      text NOT NULL CHECK (format IN ('text', 'markdown')),
    sha256      bytea NOT NULL CHECK (length(sha256) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, sha256)
);

-- Chunks with their embedding. Vectors of different models are not comparable even at equal
-- dimension, so the model is stored with every vector and every search filters on it.
-- No ANN index on purpose: pgvector 0.6.2 applies WHERE after an approximate index scan, so a
-- small tenant beside a big one could get fewer than k results. Exact search over the tenant's
-- rows (this btree, then a sort by distance) has perfect recall.
CREATE TABLE kb_chunks (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    document_id      uuid NOT NULL REFERENCES kb_documents (id) ON DELETE CASCADE,
    chunk_index      integer NOT NULL CHECK (chunk_index >= 0),
    content          text NOT NULL,
    char_start       integer NOT NULL,
    char_end         integer NOT NULL,
    embedding_model  text NOT NULL,
    embedding        vector(384) NOT NULL,
    UNIQUE (document_id, chunk_index, embedding_model)
);
CREATE INDEX kb_chunks_tenant_model ON kb_chunks (tenant_id, embedding_model);

-- Conversation memory: one row per exchange; synthesis reads the last 10.
CREATE TABLE ai_memory (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact         text NOT NULL CHECK (length(contact) BETWEEN 1 AND 200),
    turn_no         bigint NOT NULL,
    user_text       text NOT NULL,
    assistant_text  text NOT NULL,
    meta            jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact, turn_no)
);

-- Tokens per model call, for the monthly budget. `estimated`: the model reported no usage.
CREATE TABLE ai_usage (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    endpoint           text NOT NULL,
    model              text NOT NULL,
    prompt_tokens      integer NOT NULL DEFAULT 0,
    completion_tokens  integer NOT NULL DEFAULT 0,
    estimated          boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ai_usage_tenant_time ON ai_usage (tenant_id, created_at);

-- One row per AI call, whatever its outcome (refusals included).
CREATE TABLE ai_audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    endpoint     text NOT NULL,
    outcome      text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}',
    duration_ms  integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ai_audit_tenant_time ON ai_audit (tenant_id, created_at);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['kb_documents', 'kb_chunks', 'ai_memory', 'ai_usage', 'ai_audit'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
            t);
    END LOOP;
END
$$;

-- The role natural-language queries run as (SET LOCAL ROLE). Roles are server-wide and many
-- databases share a server in tests, hence the check.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flomastr_ai_readonly') THEN
        CREATE ROLE flomastr_ai_readonly NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;

-- The views tenants may declare for natural-language queries. They run with the owner's
-- rights (the role gets no grant on any table) and filter on app.tenant_id themselves;
-- security_barrier keeps a caller's leaky functions from seeing other tenants' rows first.
CREATE SCHEMA ai_views;

CREATE VIEW ai_views.inbound_messages WITH (security_barrier = true) AS
    SELECT id, conversation_key AS contact, payload ->> 'message' AS message, status,
           provider_timestamp AS received_at
    FROM jobs
    WHERE tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid;
COMMENT ON VIEW ai_views.inbound_messages IS 'Messages customers sent: contact, message text, processing status, received_at.';

CREATE VIEW ai_views.outbound_messages WITH (security_barrier = true) AS
    SELECT id, recipient AS contact, content ->> 'text' AS message, status, created_at AS sent_at
    FROM outbound_messages
    WHERE tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid;
COMMENT ON VIEW ai_views.outbound_messages IS 'Messages the business sent: contact, message text, delivery status, sent_at.';

CREATE VIEW ai_views.knowledge_documents WITH (security_barrier = true) AS
    SELECT id, title, format, created_at
    FROM kb_documents
    WHERE tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid;
COMMENT ON VIEW ai_views.knowledge_documents IS 'Knowledge base documents: title, format, created_at.';

GRANT USAGE ON SCHEMA ai_views TO flomastr_ai_readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA ai_views TO flomastr_ai_readonly;
