-- The tenant's catalog of WhatsApp message templates, as its provider (Meta, InfoBip, Twilio)
-- approved them; the tenant's n8n syncs the list with PUT /routes/context/templates, which
-- replaces the whole catalog. Pulse content (POST /routes/context/pulse-content) only ever
-- proposes APPROVED templates. The engine validates every field before writing; the checks
-- here are the backstop.
CREATE TABLE message_templates (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Meta/InfoBip: the template name; Twilio: the Content SID (HX...).
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 512),
    language    text NOT NULL CHECK (length(language) BETWEEN 1 AND 16),
    category    text NOT NULL CHECK (category IN ('MARKETING', 'UTILITY', 'AUTHENTICATION')),
    status      text NOT NULL CHECK (status IN ('APPROVED', 'PENDING', 'REJECTED', 'PAUSED', 'DISABLED')),
    -- The body with positional placeholders {{1}}..{{n}}.
    body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 1024),
    -- One {description, example} per placeholder, in order.
    variables   jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(variables) = 'array'),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name, language)
);

-- Row-level security as on the other AI tables (see 20261125000007_ai.sql).
ALTER TABLE message_templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_templates FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON message_templates
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
