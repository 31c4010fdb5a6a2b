-- A run's recipients by outcome: planned but not sent yet, skipped by the policy (with the
-- reason), and the messages' statuses (failed ones with the provider's code).
SELECT r.state, r.reason, m.status, m.error_code, count(*) AS n
FROM campaign_recipients r
LEFT JOIN outbound_messages m ON m.id = r.message_id
WHERE r.run_id = $1
GROUP BY 1, 2, 3, 4
