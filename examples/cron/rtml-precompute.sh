#!/usr/bin/env bash
# Nightly `rtml precompute` for cron: a lock, one log file and one JSON summary per run, one
# line per run in LOG_DIR/precompute.runs.log, old logs rotated, and the job's exit code
# passed through so cron (MAILTO) or your scheduler sees failures.
#
# Environment:
#   EVENTS      event log: a Parquet file, a glob or a directory of partitions (required)
#   ROOT        artifacts root; readers follow ROOT/latest (required)
#   ITEMS       item catalogue Parquet (optional)
#   KEEP        runs to keep (default 7; the one ROOT/latest points to is never deleted)
#   WARM_START  1 = continue from ROOT/latest with only the new events (stateful);
#               anything else = full run from the whole history (stateless)
#   MAX_STALENESS  e.g. 26h: exit 76 without publishing when the newest event is older
#               (a stopped feed is noticed instead of republished); unset: no check
#   LOG_DIR     where logs and the JSON summaries go (default ROOT/logs)
#   and RTML, LOG_KEEP_DAYS, LOCK_FILE, RTML_CONFIG: see rtml-cron-lib.sh
# Arguments after the script name are passed to `rtml precompute` (e.g. --dim 64).
#
# Exit codes are rtml's: 0 ok (also when the run already existed), 65 bad data,
# 66 missing input, 73 cannot write, 75 another run holds the lock (retry later),
# 76 the newest event is older than MAX_STALENESS (the feed has stopped).
set -euo pipefail

: "${EVENTS:?set EVENTS to the event log}"
: "${ROOT:?set ROOT to the artifacts root}"
KEEP=${KEEP:-7}
LOG_DIR=${LOG_DIR:-$ROOT/logs}
# shellcheck source=rtml-cron-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rtml-cron-lib.sh"

cron_start precompute
args=("$EVENTS" --out "$ROOT" --keep "$KEEP" --format json)
if [[ -n "${ITEMS:-}" ]]; then
  args+=(--items "$ITEMS")
fi
if [[ -n "${MAX_STALENESS:-}" ]]; then
  args+=(--max-staleness "$MAX_STALENESS")
fi
# the first night there is no previous run: a full run, whatever WARM_START says
if [[ "${WARM_START:-0}" == 1 && -e "$ROOT/latest" ]]; then
  args+=(--warm-start "$ROOT")
fi
cron_run "$LOG_DIR/precompute-$CRON_STAMP.json" "0" -- "$RTML" precompute "${args[@]}" "$@"
cron_finish "0"
