-- The job queue. The seed's columns (id, payload, status, created_at, updated_at) keep their
-- names and meaning; the rest is what a durable, fair, per-conversation-ordered queue needs.
CREATE TABLE jobs (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    payload             jsonb NOT NULL,
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'processing', 'completed', 'dead')),
    -- Jobs of one conversation (the tenant's contact) run one at a time, in order.
    conversation_key    text NOT NULL,
    -- Provider message id (or another idempotency key): a redelivery never makes a second job.
    dedup_key           text,
    -- Conversation order: the provider's timestamp, then arrival.
    provider_timestamp  timestamptz NOT NULL DEFAULT now(),
    seq                 bigint GENERATED ALWAYS AS IDENTITY,
    priority            smallint NOT NULL DEFAULT 0,
    attempts            integer NOT NULL DEFAULT 0,
    max_attempts        integer NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    run_after           timestamptz NOT NULL DEFAULT now(),
    -- A lease: who holds the job (a fencing token) and until when.
    lease_token         uuid,
    lease_expires_at    timestamptz,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'processing') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL))
);

CREATE UNIQUE INDEX jobs_dedup ON jobs (tenant_id, dedup_key) WHERE dedup_key IS NOT NULL;
-- Claim path: a tenant's queued rows in delivery order.
CREATE INDEX jobs_queued ON jobs (tenant_id, priority DESC, provider_timestamp, seq)
    WHERE status = 'queued';
-- "Is anything ahead of this job, or in flight, in its conversation?"
CREATE INDEX jobs_conversation ON jobs (tenant_id, conversation_key, provider_timestamp, seq)
    WHERE status IN ('queued', 'processing');
CREATE INDEX jobs_in_flight ON jobs (tenant_id, lease_expires_at) WHERE status = 'processing';
CREATE INDEX jobs_finished ON jobs (updated_at) WHERE status IN ('completed', 'dead');

-- A queue table churns: vacuum it on a small absolute threshold, not a fraction of its size.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 100,
                      autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 100,
                      fillfactor = 80);
