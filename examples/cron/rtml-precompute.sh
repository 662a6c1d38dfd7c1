#!/usr/bin/env bash
# Nightly `rtml precompute` for cron: one log file per run, old logs rotated,
# and the job's exit code passed through so cron (MAILTO) or your scheduler sees failures.
#
# Environment:
#   EVENTS      event log: a Parquet file, a glob or a directory of partitions (required)
#   ROOT        artifacts root; readers follow ROOT/latest (required)
#   ITEMS       item catalogue Parquet (optional)
#   RTML        the rtml executable (default: rtml on PATH)
#   KEEP        runs to keep (default 7; the one ROOT/latest points to is never deleted)
#   WARM_START  1 = continue from ROOT/latest with only the new events (stateful);
#               anything else = full run from the whole history (stateless)
#   LOG_DIR     where logs go (default ROOT/logs); LOG_KEEP_DAYS (default 30)
#
# Exit codes are rtml's: 0 ok (also when the run already existed), 65 bad data,
# 66 missing input, 73 cannot write, 75 another run holds the lock (retry later).
set -euo pipefail

: "${EVENTS:?set EVENTS to the event log}"
: "${ROOT:?set ROOT to the artifacts root}"
RTML=${RTML:-rtml}
KEEP=${KEEP:-7}
LOG_DIR=${LOG_DIR:-$ROOT/logs}
LOG_KEEP_DAYS=${LOG_KEEP_DAYS:-30}

mkdir -p "$LOG_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
log="$LOG_DIR/precompute-$stamp.log"

args=("$EVENTS" --out "$ROOT" --keep "$KEEP" --format json)
if [[ -n "${ITEMS:-}" ]]; then
  args+=(--items "$ITEMS")
fi
if [[ "${WARM_START:-0}" == 1 && -e "$ROOT/latest" ]]; then
  args+=(--warm-start "$ROOT")
fi

{
  echo "# $(date -u +%FT%TZ) $RTML precompute ${args[*]}"
} >>"$log"
set +e
# stdout (the JSON summary) and stderr (progress, warnings, the one-line error) both go to the log
NO_COLOR=1 "$RTML" precompute "${args[@]}" >>"$log" 2>&1
status=$?
set -e
echo "# $(date -u +%FT%TZ) exit $status" >>"$log"

find "$LOG_DIR" -name 'precompute-*.log' -mtime +"$LOG_KEEP_DAYS" -delete 2>/dev/null || true

if [[ $status -ne 0 ]]; then
  # one line on stderr: cron mails it; the details are in the log
  echo "rtml precompute failed with exit $status; see $log" >&2
fi
exit $status
