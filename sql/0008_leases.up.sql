-- Schema v8: queue leases (explicit acknowledgement of popped messages).
--
-- A message handed out with a lease stays in its list, hidden until
-- `lease_until` (milliseconds since the Unix epoch, UTC), when it becomes
-- available again at its place; `receipt` is what acknowledges (deletes)
-- it while the lease lasts; `deliveries` counts the times it was handed
-- out. A message never leased has NULL lease and receipt and 0 deliveries,
-- so existing rows need no rewrite.
ALTER TABLE queue ADD COLUMN lease_until INTEGER;
ALTER TABLE queue ADD COLUMN receipt TEXT;
ALTER TABLE queue ADD COLUMN deliveries INTEGER NOT NULL DEFAULT 0;

-- The next lease to end, and the leases that have ended, without a scan.
CREATE INDEX queue_lease ON queue (lease_until) WHERE lease_until IS NOT NULL;
