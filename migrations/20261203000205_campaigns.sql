-- Relational Pulse campaigns: a tenant's scheduled (once, or weekly in its time zone) send of an
-- approved template to an audience, paced, through the send policy. Each run plans its
-- recipients once (one row per contact: exactly one message per contact per run, whatever
-- crashes or replicas do), then sends them in paced batches claimed with SKIP LOCKED.
CREATE TABLE campaigns (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    state              text NOT NULL CHECK (state IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled')),
    -- {"kind": "recent", "days": N} or {"kind": "list", "contacts": [...]}
    audience           jsonb NOT NULL,
    template_name      text NOT NULL,
    template_language  text NOT NULL,
    template_params    jsonb NOT NULL DEFAULT '[]',
    category           text NOT NULL CHECK (category IN ('utility', 'marketing')),
    schedule_kind      text CHECK (schedule_kind IN ('once', 'weekly')),
    run_at             timestamptz,
    -- Weekly: day of week as PostgreSQL numbers it (0 = Sunday) and local time.
    weekly_day         smallint CHECK (weekly_day BETWEEN 0 AND 6),
    weekly_time        time,
    time_zone          text NOT NULL,
    per_minute         integer NOT NULL CHECK (per_minute BETWEEN 1 AND 60000),
    next_run_at        timestamptz,
    paused_reason      text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_due ON campaigns (next_run_at) WHERE state = 'scheduled';
CREATE INDEX campaigns_by_tenant ON campaigns (tenant_id, created_at);

CREATE TABLE campaign_runs (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    campaign_id    uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    scheduled_for  timestamptz NOT NULL,
    state          text NOT NULL CHECK (state IN ('sending', 'paused', 'completed', 'cancelled')),
    planned        integer NOT NULL,
    -- Pacing across replicas: the next batch is due then, whoever takes it.
    next_batch_at  timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    UNIQUE (campaign_id, scheduled_for)
);
-- Runs of one campaign never overlap.
CREATE UNIQUE INDEX campaign_runs_one_active ON campaign_runs (campaign_id) WHERE state IN ('sending', 'paused');
CREATE INDEX campaign_runs_sending ON campaign_runs (next_batch_at) WHERE state = 'sending';

CREATE TABLE campaign_recipients (
    run_id      uuid NOT NULL REFERENCES campaign_runs (id) ON DELETE CASCADE,
    contact     text NOT NULL,
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'queued', 'skipped')),
    -- Why the policy skipped it (opted_out, frequency_capped, cancelled, ...).
    reason      text,
    message_id  uuid,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, contact)
);
CREATE INDEX campaign_recipients_pending ON campaign_recipients (run_id, contact) WHERE state = 'pending';

-- The first local `p_time` on weekday `p_dow` (0 = Sunday) in `p_zone` strictly after `p_after`.
CREATE FUNCTION flomastr_next_weekly(p_zone text, p_dow integer, p_time time, p_after timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT min(((day + p_time) AT TIME ZONE p_zone))
    FROM (SELECT (p_after AT TIME ZONE p_zone)::date + d AS day FROM generate_series(0, 7) AS d) AS days
    WHERE extract(dow FROM day) = p_dow AND ((day + p_time) AT TIME ZONE p_zone) > p_after
$$;
