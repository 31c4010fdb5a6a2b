-- One batch of finished jobs past their retention ($1 status, $2 seconds, $3 batch size): their
-- count, and the object-store keys of their media files (the rows go with the jobs by the
-- cascade; the statement still reads them from its snapshot), whose objects go next.
WITH gone AS (
    DELETE FROM jobs WHERE id IN (
        SELECT id FROM jobs WHERE status = $1 AND updated_at < now() - make_interval(secs => $2)
        LIMIT $3)
    RETURNING id
)
SELECT (SELECT count(*) FROM gone),
       ARRAY(SELECT m.object_key FROM media m
             WHERE m.job_id IN (SELECT id FROM gone) AND m.object_key IS NOT NULL)
