-- Inbound media (issue 14 part 3): each image, voice note, video, document or sticker a
-- customer sends is fetched from the provider after the webhook's commit and kept here for the
-- tenant's workers (GET /media/{id}). A row exists from the job's commit on, so a fetch that
-- fails or an engine that restarts loses nothing: `pending` rows are (re)tried when due.
-- Rows go with their job (ON DELETE CASCADE): media retention is the job retention.
CREATE TABLE media (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id               uuid NOT NULL,
    job_id           uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- Index of the file in the job's payload.media[].
    position         integer NOT NULL CHECK (position >= 0),
    -- The tenant's sender the message arrived on: whose credentials fetch the file.
    sender_id        uuid,
    provider         text NOT NULL,
    kind             text NOT NULL,
    -- Meta's media id, or the InfoBip / Twilio URL.
    provider_ref     text NOT NULL,
    declared_type    text,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'stored', 'failed')),
    content_type     text,
    sha256           text,
    size             bigint CHECK (size >= 0),
    bytes            bytea,
    error            text,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CHECK ((status = 'stored') = (bytes IS NOT NULL))
);
CREATE INDEX media_due ON media (next_attempt_at) WHERE status = 'pending';
-- Deleting a job (retention, tenant deletion) finds its media by this index.
CREATE INDEX media_job ON media (job_id);
-- The files are stored as they came (already compressed formats): no TOAST compression attempt.
ALTER TABLE media ALTER COLUMN bytes SET STORAGE EXTERNAL;

-- The tenant's largest media file, in bytes; NULL: the engine's default (--media-max-bytes).
ALTER TABLE tenants ADD COLUMN media_max_bytes bigint CHECK (media_max_bytes > 0);
