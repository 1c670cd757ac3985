-- 0010_hosts_machine_id: a registration says which machine (the contents of
-- /etc/machine-id) and which PID namespace (readlink of /proc/self/ns/pid)
-- it was made from, so that a reboot (same machine, another boot id) is told
-- apart from another machine or namespace started with the same host id,
-- which is refused even when the old registration is stopped or stale.
-- Rows without them (written before this migration) keep the rule of boot
-- ids and staleness until their host registers again.
ALTER TABLE hosts ADD COLUMN machine_id text, ADD COLUMN pid_ns text;
