-- The template catalog follows the provider's lifecycle: Meta's `message_template_status_update`
-- and `message_template_quality_update` webhooks and catalog syncs from the providers' template
-- APIs set each template's status (with the reason) and quality. A send or campaign using a
-- template that is not APPROVED is refused with its status.
ALTER TABLE message_templates DROP CONSTRAINT message_templates_status_check;
ALTER TABLE message_templates ADD CONSTRAINT message_templates_status_check CHECK (status IN (
    'APPROVED', 'PENDING', 'REJECTED', 'PAUSED', 'DISABLED', 'FLAGGED', 'IN_APPEAL', 'LIMIT_EXCEEDED',
    'LOCKED', 'PENDING_DELETION', 'DELETED', 'ARCHIVED'));
ALTER TABLE message_templates
    ADD COLUMN quality text NOT NULL DEFAULT 'UNKNOWN'
        CHECK (quality IN ('GREEN', 'YELLOW', 'RED', 'UNKNOWN')),
    ADD COLUMN status_reason text CHECK (length(status_reason) <= 256),
    -- The provider's id of the template (Meta's numeric id), when known.
    ADD COLUMN provider_template_id text CHECK (length(provider_template_id) <= 128);

-- Every status and quality change the providers reported, for the tenant to see why.
CREATE TABLE template_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    language     text NOT NULL,
    -- `status` or `quality`.
    field        text NOT NULL CHECK (field IN ('status', 'quality')),
    value        text NOT NULL,
    reason       text,
    source       text NOT NULL CHECK (source IN ('webhook', 'sync')),
    occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX template_events_template ON template_events (tenant_id, name, language, id);
ALTER TABLE template_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE template_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON template_events
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
