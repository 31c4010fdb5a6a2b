-- Consent: whether a tenant may message a contact. A contact without a row has never opted out
-- (WhatsApp contacts opt in by writing to the business or through the tenant's own sign-up).
-- `contact` is the address as the engine stores recipients: no `whatsapp:` prefix, no `+`.
CREATE TABLE contact_consent (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact     text NOT NULL CHECK (length(contact) BETWEEN 1 AND 512),
    state       text NOT NULL CHECK (state IN ('opted_in', 'opted_out')),
    -- The change that set the current state (a row of consent_events).
    event_id    bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact)
);

-- Every change, with who or what made it: an inbound keyword (the job that carried it), a
-- provider's opt-out error (the message and code), the API (admin or worker) or an import.
CREATE TABLE consent_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact      text NOT NULL,
    state        text NOT NULL CHECK (state IN ('opted_in', 'opted_out')),
    source       text NOT NULL CHECK (source IN ('keyword', 'provider', 'api', 'import')),
    detail       jsonb NOT NULL DEFAULT '{}',
    occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_events_contact ON consent_events (tenant_id, contact, id);

-- A reply the tenant marks as the confirmation of an opt-out is the one send an opted-out
-- contact still gets.
ALTER TABLE outbound_messages ADD COLUMN opt_out_confirmation boolean NOT NULL DEFAULT false;

-- Records consent changes in order and sets each contact's current state to its last change.
-- One lock order (tenant, contact) for every writer, so concurrent batches cannot deadlock.
CREATE FUNCTION flomastr_record_consent(
    p_tenants uuid[], p_contacts text[], p_states text[], p_sources text[], p_details jsonb[]
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    changed integer;
BEGIN
    WITH events AS (
        INSERT INTO consent_events (tenant_id, contact, state, source, detail)
        SELECT tenant_id, contact, state, source, detail
        FROM UNNEST(p_tenants, p_contacts, p_states, p_sources, p_details)
             WITH ORDINALITY AS c(tenant_id, contact, state, source, detail, ord)
        ORDER BY ord
        RETURNING id, tenant_id, contact, state
    ), last AS (
        SELECT DISTINCT ON (tenant_id, contact) id, tenant_id, contact, state
        FROM events ORDER BY tenant_id, contact, id DESC
    ), upserted AS (
        INSERT INTO contact_consent (tenant_id, contact, state, event_id)
        SELECT tenant_id, contact, state, id FROM last ORDER BY tenant_id, contact
        ON CONFLICT (tenant_id, contact) DO UPDATE
        SET state = EXCLUDED.state, event_id = EXCLUDED.event_id, updated_at = now()
        RETURNING 1
    )
    SELECT count(*) INTO changed FROM upserted;
    RETURN changed;
END
$$;
