-- Message categories and quiet hours. Every outbound message has a category: `service` (a reply
-- inside the contact's 24-hour window), `utility` or `marketing`. Utility and marketing sends are
-- held during the tenant's quiet hours, in the contact's time zone when known, else the tenant's,
-- and expire (fail with `hold_expired`) rather than go out later than the tenant's maximum hold.
ALTER TABLE outbound_messages
    ADD COLUMN category text NOT NULL DEFAULT 'service'
        CHECK (category IN ('service', 'utility', 'marketing')),
    -- Set when the message was first held: it fails instead of being sent after this.
    ADD COLUMN expires_at timestamptz;

ALTER TABLE send_policies
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC',
    -- Local wall-clock times; a window that ends before it starts crosses midnight (21:00-08:00).
    ADD COLUMN quiet_start time,
    ADD COLUMN quiet_end time,
    ADD COLUMN max_hold_seconds integer NOT NULL DEFAULT 43200
        CHECK (max_hold_seconds BETWEEN 1 AND 604800),
    ADD CHECK ((quiet_start IS NULL) = (quiet_end IS NULL));

-- A contact's own time zone, when the tenant knows it.
CREATE TABLE contact_time_zones (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact     text NOT NULL CHECK (length(contact) BETWEEN 1 AND 512),
    time_zone   text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact)
);

-- When the quiet window containing `p_at` ends, in the zone; NULL when `p_at` is outside it.
-- PostgreSQL's zone rules handle daylight saving (a wall-clock time in a gap moves forward).
CREATE FUNCTION flomastr_quiet_until(p_zone text, p_start time, p_end time, p_at timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    local_at timestamp := p_at AT TIME ZONE p_zone;
    t time := local_at::time;
    d date := local_at::date;
    opens timestamp;
BEGIN
    IF p_start IS NULL OR p_end IS NULL OR p_start = p_end THEN
        RETURN NULL;
    END IF;
    IF p_start < p_end THEN
        IF t >= p_start AND t < p_end THEN opens := d + p_end; ELSE RETURN NULL; END IF;
    ELSIF t >= p_start THEN
        opens := (d + 1) + p_end;
    ELSIF t < p_end THEN
        opens := d + p_end;
    ELSE
        RETURN NULL;
    END IF;
    RETURN opens AT TIME ZONE p_zone;
END
$$;

-- Until when a send of this category to this contact must wait (NULL: it may go now), and the
-- tenant's maximum hold. Service messages are never held.
CREATE FUNCTION flomastr_hold(p_tenant uuid, p_contact text, p_category text, p_at timestamptz,
                              OUT hold_until timestamptz, OUT max_hold interval)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_category = 'service' THEN NULL
                ELSE flomastr_quiet_until(COALESCE(z.time_zone, p.time_zone), p.quiet_start, p.quiet_end, p_at) END,
           make_interval(secs => COALESCE(p.max_hold_seconds, 43200))
    FROM (SELECT 1) AS one
    LEFT JOIN send_policies p ON p.tenant_id = p_tenant
    LEFT JOIN contact_time_zones z ON z.tenant_id = p_tenant AND z.contact = p_contact
$$;
