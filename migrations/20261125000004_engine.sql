-- What the engine keeps about each tenant beyond its settings: who may poll its queue, how its
-- webhooks are authenticated, its WhatsApp channel, and the reports about messages it sent.

-- Workers authenticate with a bearer token; only its SHA-256 is stored (the operator mints it).
CREATE TABLE worker_tokens (
    token_sha256  bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX worker_tokens_tenant ON worker_tokens (tenant_id);

-- One WhatsApp channel per tenant. Secrets (API keys, app secrets, webhook secrets) are one
-- AES-256-GCM sealed JSON document; key_id names the master key that sealed it, for rotation.
CREATE TABLE channels (
    tenant_id          uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    provider           text NOT NULL CHECK (provider IN ('infobip', 'meta', 'twilio')),
    sender             text NOT NULL CHECK (length(sender) BETWEEN 1 AND 64),
    base_url           text,
    secrets_sealed     bytea,
    secrets_key_id     text,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((secrets_sealed IS NULL) = (secrets_key_id IS NULL))
);

-- The seed's /webhook/inbound secret, sealed like the channel's secrets.
ALTER TABLE tenants
    ADD COLUMN webhook_secret_sealed bytea,
    ADD COLUMN webhook_secret_key_id text;

-- A conversation whose head job was dead-lettered stays blocked (later messages wait, in
-- order) until an operator releases it: the poison policy.
CREATE TABLE blocked_conversations (
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_key  text NOT NULL,
    job_id            uuid NOT NULL,
    blocked_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, conversation_key)
);

-- Delivery, seen and failure reports from the providers, kept for message status. A report
-- repeated by the provider is stored once.
CREATE TABLE status_reports (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider             text NOT NULL,
    provider_message_id  text NOT NULL,
    status               text NOT NULL CHECK (status IN ('queued', 'sent', 'delivered', 'read', 'failed')),
    provider_status      text NOT NULL,
    occurred_at          timestamptz NOT NULL,
    error_code           text,
    error_message        text,
    permanent            boolean NOT NULL DEFAULT false,
    raw                  jsonb NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, provider, provider_message_id, status, provider_status)
);
