-- Exact inverse of 0008_leases.up.sql: leased messages become available.
DROP INDEX queue_lease;
ALTER TABLE queue DROP COLUMN deliveries;
ALTER TABLE queue DROP COLUMN receipt;
ALTER TABLE queue DROP COLUMN lease_until;
