-- Outbound messages: what workers asked to send, and how far each got.
CREATE TABLE outbound_messages (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Idempotency-Key header: the same key and body give the same message.
    idempotency_key      text,
    request_sha256       bytea NOT NULL,
    recipient            text NOT NULL,
    -- {"text": "..."} or {"template": {"name", "language", "params": [...]}}
    content              jsonb NOT NULL,
    reply_to             text,
    status               text NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'sending', 'accepted', 'sent', 'delivered', 'read', 'failed')),
    provider             text,
    -- The provider's id: for InfoBip the messageId we chose (so a retry cannot double-send),
    -- for Meta the wamid, for Twilio the message SID.
    provider_message_id  text,
    attempts             integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    claimed_until        timestamptz,
    error_code           text,
    error_message        text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX outbound_due ON outbound_messages (next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbound_stuck ON outbound_messages (claimed_until) WHERE status = 'sending';
CREATE INDEX outbound_by_provider_id ON outbound_messages (tenant_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- Every status a message went through, with what caused it.
CREATE TABLE outbound_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   uuid NOT NULL REFERENCES outbound_messages (id) ON DELETE CASCADE,
    status       text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}',
    occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbound_events_message ON outbound_events (message_id, id);

-- The 24-hour customer service window: when each contact last wrote to the tenant.
CREATE TABLE contact_windows (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact          text NOT NULL,
    last_inbound_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, contact)
);

-- Status only moves forward: queued < sending < accepted (the provider took it) < sent <
-- delivered < read; failed is terminal and cannot follow delivered or read (a late failure
-- report after delivery is noise).
CREATE FUNCTION flomastr_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'accepted' THEN 2
                       WHEN 'sent' THEN 3 WHEN 'delivered' THEN 4 WHEN 'read' THEN 5
                       WHEN 'failed' THEN 6 END
$$;

-- Applies the stored provider reports of the given messages (those whose provider id is known),
-- moving each message forward only. Used after reports arrive and after a send is acknowledged
-- (a report can arrive before the provider's answer to our send is stored).
CREATE FUNCTION flomastr_apply_reports(p_tenants uuid[], p_provider_ids text[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    changed integer;
BEGIN
    WITH best AS (
        SELECT DISTINCT ON (m.id) m.id, r.status, r.error_code, r.error_message, r.provider_status, r.occurred_at
        FROM UNNEST(p_tenants, p_provider_ids) AS k(tenant_id, provider_message_id)
        JOIN outbound_messages m ON m.tenant_id = k.tenant_id AND m.provider_message_id = k.provider_message_id
        JOIN status_reports r ON r.tenant_id = m.tenant_id AND r.provider_message_id = m.provider_message_id
        WHERE m.status NOT IN ('failed')
          AND flomastr_status_rank(r.status) > flomastr_status_rank(m.status)
          AND NOT (r.status = 'failed' AND m.status IN ('delivered', 'read'))
        -- Evidence of delivery outranks a failure report.
        ORDER BY m.id, CASE r.status WHEN 'failed' THEN 3.5 ELSE flomastr_status_rank(r.status) END DESC
    ), moved AS (
        UPDATE outbound_messages m
        SET status = b.status, updated_at = now(),
            error_code = COALESCE(b.error_code, m.error_code),
            error_message = COALESCE(b.error_message, m.error_message)
        FROM best b WHERE m.id = b.id
        RETURNING m.id, b.status, b.provider_status, b.occurred_at
    ), logged AS (
        INSERT INTO outbound_events (message_id, status, detail, occurred_at)
        SELECT id, status, jsonb_build_object('source', 'report', 'provider_status', provider_status), occurred_at
        FROM moved
    )
    SELECT count(*) INTO changed FROM moved;
    RETURN changed;
END
$$;
