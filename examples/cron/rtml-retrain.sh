#!/usr/bin/env bash
# `rtml retrain` for cron, e.g. weekly: replays stateless vs stateful vs drift-triggered
# retraining on the log so far and keeps one JSON document per run.
#
# Environment:
#   EVENTS      event log (required)
#   OUT_DIR     where retrain-STAMP.json goes (required; yours to rotate)
#   LOG_DIR     default OUT_DIR/logs
#   and RTML, LOG_KEEP_DAYS, LOCK_FILE, RTML_CONFIG: see rtml-cron-lib.sh
# Arguments after the script name are passed to `rtml retrain` (e.g. --start, --schedules).
#
# Exit codes are rtml's (0 ok, 65 bad data, 66 missing input, …) and 75 when another run of
# this wrapper holds the lock.
set -euo pipefail

: "${EVENTS:?set EVENTS to the event log}"
: "${OUT_DIR:?set OUT_DIR to where the documents go}"
LOG_DIR=${LOG_DIR:-$OUT_DIR/logs}
# shellcheck source=rtml-cron-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rtml-cron-lib.sh"

cron_start retrain
mkdir -p "$OUT_DIR"
cron_run "$OUT_DIR/retrain-$CRON_STAMP.json" "0" -- "$RTML" retrain "$EVENTS" \
  --format json --quiet "$@"
cron_finish "0"
