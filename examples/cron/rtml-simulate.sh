#!/usr/bin/env bash
# `rtml simulate` for cron, e.g. each morning after the nightly precompute: replays the
# sessions since the artifacts' as-of and keeps one JSON document (and the per-request
# RESULTS Parquet) per run, for `rtml evaluate` and `rtml report`.
#
# Environment:
#   EVENTS      event log (required)
#   ARTIFACTS   precompute ROOT (its `latest` run is used) or a run directory (required)
#   OUT_DIR     where simulate-STAMP.json and results-STAMP.parquet go (required; yours to
#               rotate)
#   LOG_DIR     default OUT_DIR/logs
#   and RTML, LOG_KEEP_DAYS, LOCK_FILE, RTML_CONFIG: see rtml-cron-lib.sh
# Arguments after the script name are passed to `rtml simulate` (e.g. --strategies …).
#
# Exit codes are rtml's (0 ok, 65 bad data, 66 missing input, 73 cannot write, …) and 75
# when another run of this wrapper holds the lock.
set -euo pipefail

: "${EVENTS:?set EVENTS to the event log}"
: "${ARTIFACTS:?set ARTIFACTS to the precompute root}"
: "${OUT_DIR:?set OUT_DIR to where the documents go}"
LOG_DIR=${LOG_DIR:-$OUT_DIR/logs}
# shellcheck source=rtml-cron-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rtml-cron-lib.sh"

cron_start simulate
mkdir -p "$OUT_DIR"
cron_run "$OUT_DIR/simulate-$CRON_STAMP.json" "0" -- "$RTML" simulate "$EVENTS" \
  --artifacts "$ARTIFACTS" --out "$OUT_DIR/results-$CRON_STAMP.parquet" --format json --quiet "$@"
cron_finish "0"
