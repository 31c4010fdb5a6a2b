-- The recipients of a new run: the audience resolved once, one row per contact. $1 run,
-- $2 tenant, $3 audience kind, $4 days (recent), $5 contacts (list).
INSERT INTO campaign_recipients (run_id, contact)
SELECT $1, contact FROM (
    SELECT contact FROM contact_windows
    WHERE $3 = 'recent' AND tenant_id = $2 AND last_inbound_at > now() - make_interval(days => $4)
    UNION
    SELECT contact FROM UNNEST($5::text[]) AS list(contact) WHERE $3 = 'list'
) AS audience
ON CONFLICT DO NOTHING
