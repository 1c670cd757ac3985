-- 0006_hosts_stopped: a lease-service that stops cleanly says so, so that
-- the next lease-service of its host id (a reboot, a new boot id) takes the
-- registration over at once instead of waiting for seen_at to go stale.
-- seen_at is now refreshed by the running lease-service (its heartbeat).
ALTER TABLE hosts ADD COLUMN stopped_at timestamptz;
