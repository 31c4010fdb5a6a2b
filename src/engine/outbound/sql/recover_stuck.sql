-- Sends whose sender died mid-call. InfoBip: queued again (the same messageId cannot send twice).
-- Meta and Twilio: failed as unknown_outcome, never re-sent blindly.
WITH stuck AS (
    SELECT m.id, c.provider FROM outbound_messages m
    -- The message's sender (messages queued before senders existed: the tenant's first).
    JOIN channels c ON c.tenant_id = m.tenant_id
                   AND (c.id = m.sender_id OR (m.sender_id IS NULL AND c.ordinal = 0))
    WHERE m.status = 'sending' AND m.claimed_until < now()
    FOR UPDATE OF m SKIP LOCKED
), moved AS (
    UPDATE outbound_messages m
    SET status = CASE WHEN s.provider = 'infobip' THEN 'queued' ELSE 'failed' END,
        error_code = CASE WHEN s.provider = 'infobip' THEN m.error_code ELSE 'unknown_outcome' END,
        error_message = CASE WHEN s.provider = 'infobip' THEN m.error_message
                             ELSE 'the engine stopped while sending; the message may or may not have been sent' END,
        claimed_until = NULL, next_attempt_at = now(), updated_at = now()
    FROM stuck s WHERE m.id = s.id
    RETURNING m.id, m.status
)
INSERT INTO outbound_events (message_id, status, detail)
SELECT id, status, '{"source": "recovery"}'::jsonb FROM moved
