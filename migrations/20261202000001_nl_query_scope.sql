-- Natural-language queries run on connections of their own login (a member of
-- flomastr_ai_readonly, created by `flomastr migrate --admin-url`). Before a query runs, the engine
-- ties that connection to one tenant here, by the server's backend pid; the views of ai_views show
-- that tenant's rows only. Nothing the query can set moves it: the table is the engine's and the
-- pid is the server's (the app.tenant_id setting the views used before is settable by anyone).
-- A row left by a connection that went away is overwritten when the pid is used again, and
-- removed by the engine's clean-up.
CREATE TABLE nl_query_scopes (
    backend_pid  integer PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Runs as the engine's role (SECURITY DEFINER): the query login has no right on the table.
CREATE FUNCTION flomastr_nl_query_tenant() RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT tenant_id FROM public.nl_query_scopes WHERE backend_pid = pg_backend_pid() $$;
REVOKE EXECUTE ON FUNCTION flomastr_nl_query_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION flomastr_nl_query_tenant() TO flomastr_ai_readonly;

-- The same views, scoped by the connection instead of the setting. `(SELECT ...)` evaluates the
-- scope once per query, not per row.
CREATE OR REPLACE VIEW ai_views.inbound_messages WITH (security_barrier = true) AS
    SELECT id, conversation_key AS contact, payload ->> 'message' AS message, status,
           provider_timestamp AS received_at
    FROM jobs
    WHERE tenant_id = (SELECT public.flomastr_nl_query_tenant());

CREATE OR REPLACE VIEW ai_views.outbound_messages WITH (security_barrier = true) AS
    SELECT id, recipient AS contact, content ->> 'text' AS message, status, created_at AS sent_at
    FROM outbound_messages
    WHERE tenant_id = (SELECT public.flomastr_nl_query_tenant());

CREATE OR REPLACE VIEW ai_views.knowledge_documents WITH (security_barrier = true) AS
    SELECT id, title, format, created_at
    FROM kb_documents
    WHERE tenant_id = (SELECT public.flomastr_nl_query_tenant());
