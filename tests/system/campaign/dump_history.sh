#!/usr/bin/env bash
# dump_history.sh — write the database history that checker.py reads
# (db-*.tsv, CSV with a header) into a run's folder. Shared by the fault
# campaign (campaign.sh) and the failover test (../failover.sh).
#
# Usage: dump_history.sh PSQL DATABASE_URL DIR REPO
#   PSQL: path of psql; REPO: the repository of the work items under test.
# Exit status: 0, or psql's on failure.

set -euo pipefail

PSQL="$1" URL="$2" DIR="$3" REPO="$4"

dump() { # dump NAME QUERY
  "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$URL" \
    -c "\\copy ($2) TO '$DIR/db-$1.tsv' WITH (FORMAT csv, HEADER true)"
}
dump tasks "SELECT work_item, stage, cycle, pr_number FROM tasks WHERE repo = '$REPO'"
dump stage_history "SELECT h.id, t.work_item, h.from_stage, h.to_stage, h.actor, h.lease_epoch,
  (extract(epoch FROM h.at) * 1000)::bigint AS at_ms FROM stage_history h JOIN tasks t ON t.id = h.task_id
  WHERE t.repo = '$REPO' ORDER BY h.id"
dump side_effects "SELECT work_item, transition, effect, cycle, lease_epoch, outcome,
  (extract(epoch FROM created_at) * 1000)::bigint AS at_ms FROM side_effects ORDER BY id"
dump lease_events "SELECT id, work_item, epoch, kind, actor,
  (extract(epoch FROM at) * 1000)::bigint AS at_ms, detail FROM lease_events WHERE kind <> 'deferred' ORDER BY id"
dump deferrals "SELECT count(*) AS n FROM lease_events WHERE kind = 'deferred'"
dump transition_lease "SELECT work_item, epoch, owner_host, released_at IS NULL AS held,
  coalesce(release_reason, '') AS reason FROM transition_lease"
