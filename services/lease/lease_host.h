/*
 * lease_host.h - this host's registration in `hosts`: the address other
 * hosts probe, the refusal of a duplicate host id, the heartbeat that keeps
 * seen_at fresh, and the clean-stop mark (internal to lease-service).
 *
 * Threading: lease_host_register() runs in the start hook, before the
 * reaper; the heartbeat runs on its own thread between start and stop.
 * Errors: registration failures are orch_err and are logged here, naming
 * the variable or the other registration to fix.
 */
#ifndef ORCH_LEASE_HOST_H
#define ORCH_LEASE_HOST_H

#include "lease_svc.h"

/* Reads this machine's id (ORCH_MACHINE_ID_PATH) and PID namespace
 * (refusing to start, ORCH_EINVAL, if either is unreadable), chooses the
 * advertised address (ORCH_LEASE_ADVERTISE_URL, else `listen`;
 * lease_advertise_url()), then registers this host under the rule of
 * lease_host_decide(): waits at most ls->host_stale_ms (plus one heartbeat)
 * for a fresh registration of another boot to go stale, and refuses
 * (ORCH_EEXISTS) if it is refreshed meanwhile, or at once if it was made
 * from another machine or PID namespace. Nothing is written on
 * refusal. `listen` and `advertise` are borrowed for the call. */
orch_err lease_host_register(lease_svc *ls, const char *listen,
                             const char *advertise) ORCH_NODISCARD;

/* Starts the heartbeat thread: every ls->host_stale_ms /
 * LEASE_HOST_BEATS_PER_STALE it refreshes seen_at. If the registration
 * belongs to another boot (a lease-service of another boot took it over
 * while this one was frozen or cut off), it raises the alert
 * lease.host-taken-over and asks the process to stop (SIGTERM to itself). */
orch_err lease_host_beat_start(lease_svc *ls) ORCH_NODISCARD;

/* Stops the heartbeat (if started) and marks this instance's registration
 * as stopped, so that the next boot of this host takes it over at once.
 * Accepts a service whose heartbeat never started. */
void lease_host_stop(lease_svc *ls);

#endif
