#!/usr/bin/env bash
# `rtml drift popularity` for cron, e.g. hourly: compares the last window's item popularity
# with the one before it, keeps one JSON document per run, and runs ON_DRIFT when drift is
# detected (e.g. the precompute wrapper, to retrain now instead of tonight).
#
# Environment:
#   EVENTS      event log (required)
#   OUT_DIR     where drift-STAMP.json goes (required; yours to rotate)
#   ON_DRIFT    a command run (by bash -c) when drift is detected (optional); its exit code
#               is in the runs log, the wrapper still exits 10
#   LOG_DIR     default OUT_DIR/logs
#   and RTML, LOG_KEEP_DAYS, LOCK_FILE, RTML_CONFIG: see rtml-cron-lib.sh
# Arguments after the script name are passed to `rtml drift popularity` (e.g. --current 1h).
#
# Exit codes are rtml's: 0 no drift, 10 drift detected (not a failure: nothing on stderr),
# 65 bad data, 66 missing input, …; 75 when another run of this wrapper holds the lock.
set -euo pipefail

: "${EVENTS:?set EVENTS to the event log}"
: "${OUT_DIR:?set OUT_DIR to where the documents go}"
LOG_DIR=${LOG_DIR:-$OUT_DIR/logs}
# shellcheck source=rtml-cron-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rtml-cron-lib.sh"

cron_start drift
mkdir -p "$OUT_DIR"
cron_run "$OUT_DIR/drift-$CRON_STAMP.json" "0 10" -- "$RTML" drift popularity "$EVENTS" \
  --format json --quiet "$@"
if [[ $CRON_STATUS -eq 10 && -n "${ON_DRIFT:-}" ]]; then
  set +e
  bash -c "$ON_DRIFT" >>"$CRON_LOG" 2>&1
  hook=$?
  set -e
  echo "$(date -u +%FT%TZ) drift ON_DRIFT exit=$hook log=$CRON_LOG" >>"$CRON_RUNS"
fi
cron_finish "0 10"
