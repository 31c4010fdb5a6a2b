-- Frequency caps: at most `marketing_cap` marketing messages per contact per rolling
-- `marketing_cap_seconds` (NULL: no cap). Counted from outbound_messages; policy refusals are
-- never stored, so they never count.
ALTER TABLE send_policies
    ADD COLUMN marketing_cap integer CHECK (marketing_cap BETWEEN 1 AND 1000),
    ADD COLUMN marketing_cap_seconds integer NOT NULL DEFAULT 604800
        CHECK (marketing_cap_seconds BETWEEN 1 AND 31536000);
CREATE INDEX outbound_marketing_by_contact ON outbound_messages (tenant_id, recipient, created_at)
    WHERE category = 'marketing';

-- Meta's per-user marketing limit (131049, "healthy ecosystem engagement"): the provider refused
-- marketing to this contact; none is sent before `limited_until` (Meta documents 24 hours).
CREATE TABLE contact_marketing_limits (
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact        text NOT NULL,
    limited_until  timestamptz NOT NULL,
    -- How often the provider answered so for this contact.
    hits           integer NOT NULL DEFAULT 1,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact)
);

-- Records 131049 for these (tenant, contact) pairs: the limit runs until `p_until`.
CREATE FUNCTION flomastr_marketing_limited(p_tenants uuid[], p_contacts text[], p_until timestamptz)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO contact_marketing_limits (tenant_id, contact, limited_until)
    SELECT DISTINCT tenant_id, contact, p_until FROM UNNEST(p_tenants, p_contacts) AS c(tenant_id, contact)
    ORDER BY 1, 2
    ON CONFLICT (tenant_id, contact) DO UPDATE
    SET limited_until = GREATEST(contact_marketing_limits.limited_until, EXCLUDED.limited_until),
        hits = contact_marketing_limits.hits + 1, updated_at = now()
$$;
