-- Fair claims of outbound messages: the tenants with queued messages are found by a loose index
-- scan of this index, and each tenant's due messages are read from it in order. It replaces the
-- first-in-first-out index across all tenants, which only that claim used.
CREATE INDEX outbound_queued_by_tenant ON outbound_messages (tenant_id, next_attempt_at)
    WHERE status = 'queued';
DROP INDEX outbound_due;
