-- Opens (or extends) each contact's 24-hour window; the sender of the contact's latest message
-- becomes the contact's default sender (a message without one keeps the stored sender).
-- $1 tenants, $2 contacts, $3 when each message was sent, $4 the sender each arrived on.
INSERT INTO contact_windows (tenant_id, contact, last_inbound_at, last_sender_id)
SELECT DISTINCT ON (tenant_id, contact) tenant_id, contact, at, sender_id
FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::uuid[]) AS w(tenant_id, contact, at, sender_id)
-- One lock order for every writer: concurrent batches cannot deadlock.
ORDER BY tenant_id, contact, at DESC
ON CONFLICT (tenant_id, contact) DO UPDATE
SET last_inbound_at = GREATEST(contact_windows.last_inbound_at, EXCLUDED.last_inbound_at),
    last_sender_id = CASE WHEN EXCLUDED.last_inbound_at >= contact_windows.last_inbound_at
                          THEN COALESCE(EXCLUDED.last_sender_id, contact_windows.last_sender_id)
                          ELSE contact_windows.last_sender_id END
