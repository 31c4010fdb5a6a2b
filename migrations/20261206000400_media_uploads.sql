-- Uploaded media (issue 14): files a tenant's worker uploads (POST /media) to send, kept in the
-- same table as inbound media so one id names either. An upload has no job: it is stored at
-- once and kept for the tenant's media retention (expires_at).
ALTER TABLE media ALTER COLUMN job_id DROP NOT NULL;
ALTER TABLE media ALTER COLUMN position DROP NOT NULL;
ALTER TABLE media ALTER COLUMN provider DROP NOT NULL;
ALTER TABLE media ALTER COLUMN kind DROP NOT NULL;
ALTER TABLE media ALTER COLUMN provider_ref DROP NOT NULL;
ALTER TABLE media ADD COLUMN filename text;
-- When the retention deletes the row (uploads; inbound rows also go with their job).
ALTER TABLE media ADD COLUMN expires_at timestamptz;
-- Where the bytes are when not in `bytes`: the key in the engine's object store.
ALTER TABLE media ADD COLUMN object_key text;
-- An inbound row is fetched (it has a job); an upload is complete from its insert on.
ALTER TABLE media ADD CONSTRAINT media_upload_stored CHECK (job_id IS NOT NULL OR status = 'stored');
-- Stored means the bytes are somewhere: in the row or in the object store.
ALTER TABLE media DROP CONSTRAINT media_check;
ALTER TABLE media ADD CONSTRAINT media_stored_bytes
    CHECK ((status = 'stored') = (bytes IS NOT NULL OR object_key IS NOT NULL));
CREATE INDEX media_expiry ON media (expires_at) WHERE expires_at IS NOT NULL;
-- A signed public URL names the id alone (ids are random; the key is tenant and id).
CREATE INDEX media_id ON media (id);
-- The retention sweep of inbound media by age.
CREATE INDEX media_created ON media (created_at);

-- A provider's id for an engine media file, uploaded with one sender's credentials (Meta: an
-- uploaded media id lives 30 days); re-used while it has not expired.
CREATE TABLE media_provider_ids (
    tenant_id          uuid NOT NULL,
    media_id           uuid NOT NULL,
    sender_id          uuid NOT NULL,
    provider_media_id  text NOT NULL,
    expires_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, media_id, sender_id),
    FOREIGN KEY (tenant_id, media_id) REFERENCES media (tenant_id, id) ON DELETE CASCADE
);

-- How long the tenant's media is kept, in seconds; NULL: the engine's job retention.
ALTER TABLE tenants ADD COLUMN media_retention_seconds bigint CHECK (media_retention_seconds > 0);
