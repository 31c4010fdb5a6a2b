-- The files of the archived jobs (media rows go with their job).
SELECT to_jsonb(m)::text FROM media m
JOIN jobs j ON j.id = m.job_id
WHERE m.tenant_id = $1 AND j.status <> 'completed'
ORDER BY m.created_at, m.id
