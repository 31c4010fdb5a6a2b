-- Runs whose next paced batch is due, taken by this replica: the next batch moves one pacing
-- interval on (a second for 60 or more per minute, else 60 / per_minute seconds), so replicas
-- together send at the campaign's pace. The interval is counted from when this batch was due,
-- not from when it was taken (a tick's delay would otherwise slow every batch); a batch taken
-- more than an interval late (a run just started or resumed) counts from now: nothing is
-- caught up in a burst. $1 runs at most.
WITH due AS (
    SELECT r.id FROM campaign_runs r
    WHERE r.state = 'sending' AND r.next_batch_at <= now()
    ORDER BY r.next_batch_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE campaign_runs r
SET next_batch_at = CASE WHEN r.next_batch_at + pace.every >= now() THEN r.next_batch_at + pace.every
                         ELSE now() + pace.every END
FROM due, campaigns c, LATERAL (SELECT make_interval(secs => GREATEST(1.0, 60.0 / c.per_minute)) AS every) pace
WHERE r.id = due.id AND c.id = r.campaign_id
RETURNING r.id AS run_id, r.campaign_id, r.tenant_id, c.template_name, c.template_language,
          c.template_params, c.brief, c.content_language, c.category, c.per_minute
