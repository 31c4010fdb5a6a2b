-- New ids from the table's own sequence, in the old order (volatile functions run after the
-- sort), remembered for contact_consent.event_id.
WITH src AS MATERIALIZED (
    SELECT r.*, nextval(pg_get_serial_sequence('consent_events', 'id')) AS new_id
    FROM jsonb_populate_recordset(NULL::consent_events, $1::text::jsonb) AS r
    ORDER BY r.id
), remembered AS (
    INSERT INTO pg_temp.flomastr_restore_events (old, new) SELECT id, new_id FROM src
)
INSERT INTO consent_events (id, tenant_id, contact, state, source, detail, occurred_at)
OVERRIDING SYSTEM VALUE
SELECT new_id, $2, contact, state, source, detail, occurred_at FROM src ORDER BY new_id
