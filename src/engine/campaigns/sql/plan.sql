-- The recipients of a new run: the audience resolved once, one row per contact. $1 run,
-- $2 tenant, $3 audience kind, $4 days (recent), $5 contacts (list), $6 segment name.
INSERT INTO campaign_recipients (run_id, contact)
SELECT $1, contact FROM (
    SELECT contact FROM contact_windows
    WHERE $3 = 'recent' AND tenant_id = $2 AND last_inbound_at > now() - make_interval(days => $4)
    UNION
    SELECT contact FROM UNNEST($5::text[]) AS list(contact) WHERE $3 = 'list'
    UNION
    SELECT unnest(contacts) FROM campaign_segments WHERE $3 = 'segment' AND tenant_id = $2 AND name = $6
) AS audience
ON CONFLICT DO NOTHING
