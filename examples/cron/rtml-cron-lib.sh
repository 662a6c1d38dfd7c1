# Shared by the example cron wrappers (source it; do not run it).
#
# What every wrapper gets from it:
#   - a lock: a second run of the same job while one is running exits 75 (TEMP_FAIL, as rtml's
#     own lock), with one line on stderr and in the runs log, instead of piling up;
#   - one log file per run (stdout's document goes to its output file, stderr to the log);
#   - one line per run in LOG_DIR/NAME.runs.log: when, exit code, seconds, output, log;
#   - an output file that exists only when the run succeeded: the document is written to a
#     temporary name and renamed into place, so a reader never sees half a file;
#   - its logs (and JSON kept in LOG_DIR) older than LOG_KEEP_DAYS deleted; one line on stderr (cron mails it) on failure.
#
# Settings (environment): RTML (default: rtml on PATH), LOG_DIR (each wrapper sets a
# default), LOG_KEEP_DAYS (default 30), LOCK_FILE (default LOG_DIR/NAME.lock),
# RTML_CONFIG (an rtml.toml for the option values; see docs/cron.md).

RTML=${RTML:-rtml}
LOG_KEEP_DAYS=${LOG_KEEP_DAYS:-30}

# cron_start NAME: make LOG_DIR, take the lock, name this run's log file ($CRON_LOG).
cron_start() {
  CRON_NAME=$1
  mkdir -p "$LOG_DIR"
  CRON_STAMP=$(date -u +%Y%m%dT%H%M%SZ)
  CRON_LOG="$LOG_DIR/$CRON_NAME-$CRON_STAMP.log"
  CRON_RUNS="$LOG_DIR/$CRON_NAME.runs.log"
  CRON_BEGIN=$(date +%s)
  local lock=${LOCK_FILE:-$LOG_DIR/$CRON_NAME.lock}
  exec 9>>"$lock"
  if ! flock -n 9; then
    echo "$(date -u +%FT%TZ) $CRON_NAME exit=75 skipped: another run holds $lock" >>"$CRON_RUNS"
    echo "rtml $CRON_NAME: another run holds $lock; skipped (exit 75)" >&2
    exit 75
  fi
}

# cron_run OUT OK_CODES -- COMMAND...: run COMMAND with stdout to OUT (renamed into place
# when the exit code is one of OK_CODES, e.g. "0" or "0 10"), stderr to the run's log.
# Sets CRON_STATUS.
cron_run() {
  local out=$1 ok_codes=$2
  shift 3
  local tmp="$out.tmp-$$"
  echo "# $(date -u +%FT%TZ) $*" >>"$CRON_LOG"
  set +e
  NO_COLOR=1 "$@" >"$tmp" 2>>"$CRON_LOG"
  CRON_STATUS=$?
  set -e
  echo "# $(date -u +%FT%TZ) exit $CRON_STATUS" >>"$CRON_LOG"
  if [[ " $ok_codes " == *" $CRON_STATUS "* ]]; then
    mv -f "$tmp" "$out"
  else
    rm -f "$tmp"
    out="-"
  fi
  local seconds=$(($(date +%s) - CRON_BEGIN))
  echo "$(date -u +%FT%TZ) $CRON_NAME exit=$CRON_STATUS seconds=$seconds out=$out log=$CRON_LOG" >>"$CRON_RUNS"
}

# cron_finish OK_CODES: rotate old logs; one line on stderr unless the exit code is in
# OK_CODES; exit with rtml's code.
cron_finish() {
  local ok_codes=$1
  find "$LOG_DIR" \( -name "$CRON_NAME-*.log" -o -name "$CRON_NAME-*.json" \) \
    -mtime +"$LOG_KEEP_DAYS" -delete 2>/dev/null || true
  if [[ " $ok_codes " != *" $CRON_STATUS "* ]]; then
    echo "rtml $CRON_NAME failed with exit $CRON_STATUS; see $CRON_LOG" >&2
  fi
  exit "$CRON_STATUS"
}
