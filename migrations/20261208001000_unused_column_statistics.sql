-- No query compares a job's whole payload or a media file's bytes, so statistics on them are of
-- no use to the planner, and gathering them is not free: under load autovacuum analyzes the
-- queue's tables about every second (autovacuum_naptime = 1s), and each pass read and compared a
-- sample of whole payloads and detoasted stored files (up to the media size limit each).
ALTER TABLE jobs ALTER COLUMN payload SET STATISTICS 0;
ALTER TABLE media ALTER COLUMN bytes SET STATISTICS 0;
