-- Saved segments: named contact lists a tenant keeps for its campaigns' audiences. A run reads
-- the segment when it starts, so a segment changed later affects only later runs.
CREATE TABLE campaign_segments (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    contacts    text[] NOT NULL CHECK (cardinality(contacts) BETWEEN 1 AND 100000),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
