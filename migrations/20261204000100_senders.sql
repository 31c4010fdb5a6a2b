-- Many senders (numbers) per tenant. The `channels` table keeps one row per sender: the tenant's
-- first sender has ordinal 0 (what the single-channel code reads), the others follow in the
-- order the Tenant lists them. A sender id belongs to at most one tenant across the engine:
-- `address` is the sender without `whatsapp:` and `+`, unique per provider.

DO $$
DECLARE
    shared text;
BEGIN
    SELECT string_agg(DISTINCT provider || ' ' || sender, ', ') INTO shared
    FROM (SELECT provider, sender, count(*) OVER (PARTITION BY provider,
                 regexp_replace(btrim(sender), '^(whatsapp:)?[+]?', '')) AS holders
          FROM channels) c
    WHERE holders > 1;
    IF shared IS NOT NULL THEN
        RAISE EXCEPTION 'several tenants use the same sender (%); give each its own before upgrading', shared;
    END IF;
END
$$;

ALTER TABLE channels DROP CONSTRAINT channels_pkey;
ALTER TABLE channels
    ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    ADD COLUMN ordinal integer NOT NULL DEFAULT 0 CHECK (ordinal BETWEEN 0 AND 19),
    ADD COLUMN label text CHECK (length(label) BETWEEN 1 AND 64),
    ADD COLUMN display_number text CHECK (length(display_number) BETWEEN 1 AND 32),
    -- Meta: the WhatsApp Business Account of the number, to route a shared app's webhooks.
    ADD COLUMN waba_id text CHECK (waba_id ~ '^[0-9]{1,32}$'),
    ADD COLUMN address text GENERATED ALWAYS AS (regexp_replace(btrim(sender), '^(whatsapp:)?[+]?', '')) STORED;
ALTER TABLE channels ADD CONSTRAINT channels_tenant_ordinal UNIQUE (tenant_id, ordinal)
    DEFERRABLE INITIALLY DEFERRED;
CREATE UNIQUE INDEX channels_sender_owner ON channels (provider, address);
CREATE INDEX channels_waba ON channels (waba_id) WHERE waba_id IS NOT NULL;

-- Which sender a send goes out from (NULL for messages queued before senders: the first).
ALTER TABLE outbound_messages ADD COLUMN sender_id uuid;

-- The sender each contact last wrote to: the default sender of replies to them.
ALTER TABLE contact_windows ADD COLUMN last_sender_id uuid;
