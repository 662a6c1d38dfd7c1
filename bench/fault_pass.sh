#!/usr/bin/env bash
# Fault-injection pass over rtml (issue #15: never lose data, never serve a silently wrong answer).
#
#   bash bench/fault_pass.sh OUTDIR
#
# Writes OUTDIR/results.md (one Markdown table per area; docs/fault-pass.md is built from it)
# and OUTDIR/raw/ (stderr of the interesting cases). Needs `make .venv/.installed`. Uses the
# committed sample world (148k events), a private work dir under /tmp and a private $TMPDIR,
# both removed at exit; tmpfs mounts (area 2) are unmounted at exit. Binds no ports. About
# ~20 minutes on 2 cores at load 8-11 (less on a quiet box); FAULT_PASS_AREAS=37 runs areas 3
# and 7 only, FAULT_PASS_READ_SECONDS sets the duration of area 4 (default 50). Mounting tmpfs needs root; without it area 2 is skipped.
set -u
[ $# -eq 1 ] || { echo "usage: bash $0 OUTDIR" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
RTML=$REPO/.venv/bin/rtml
PY=$REPO/.venv/bin/python
EV=$REPO/sample_data/shop/events.parquet
IT=$REPO/sample_data/shop/items.parquet
BANDIT=$REPO/sample_data/shop/bandit.parquet
ASOF=2024-03-31T00:00:00Z # leaves the last day for `rtml simulate` to replay
mkdir -p "$1/raw"
OUT=$(cd "$1" && pwd)
RES=$OUT/results.md
RAW=$OUT/raw
: >"$RES"
W=$(mktemp -d /tmp/rtml-fault.XXXXXX)
export TMPDIR=$W/tmp
mkdir -p "$TMPDIR"
MOUNTS=()
BG=()
cleanup() {
  for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
T0=$SECONDS
TB=$W/t-base # a published run with as-of $ASOF (areas 3 and 7)
AREAS=${FAULT_PASS_AREAS:-1234567} # e.g. FAULT_PASS_AREAS=37 runs areas 3 and 7 only
want() { case $AREAS in *$1*) return 0 ;; esac; return 1; }
STEPS="scan features cooccurrence embeddings index neighbors recs write publish switch prune"

# ---------------------------------------------------------------- helpers
pre() { timeout 180 "$RTML" precompute "$EV" --items "$IT" --quiet "$@"; }
loads() { timeout 60 "$RTML" neighbors 100000 --artifacts "$1" -k 3 >/dev/null 2>&1; echo $?; }
# leftovers: rtml temporaries in ROOT and ROOT/runs, anything in $TMPDIR but rtml's own parent dir
left() {
  local l
  l=$({
    find "$1" "$1/runs" -mindepth 1 -maxdepth 1 -name '.tmp-*' -printf '%P\n' 2>/dev/null
    find "$TMPDIR" -mindepth 1 ! -path "$TMPDIR/rtml-$(id -u)" -printf 'TMPDIR/%P\n'
  } | sed -E 's/[0-9]{8}T[0-9]{6}\.[0-9]{6}Z/RUNID/; s/-[0-9]+-[A-Za-z0-9_]+$/-PID-X/' | sort -u | tr '\n' ' ')
  echo "${l:-none}"
}
row() { echo "| $* |" >>"$RES"; }
table() {
  { echo; echo "### $1"; echo; echo "| $2 |"; echo "|$(echo "$2" | sed 's/[^|]*/---/g')|"; } >>"$RES"
}
v() { if eval "$1"; then echo ok; else echo FAIL; fi; } # verdict of a test expression
errline() { # first stderr line (pipes escaped) and the count of lines
  local f=$1
  printf '%s (%s line%s)' "$(head -1 "$f" | cut -c1-150 | sed 's/|/\\|/g')" "$(wc -l <"$f")" \
    "$([ "$(wc -l <"$f")" = 1 ] || echo s)"
}
# names, types, sizes, modes, link targets of a tree, and mtimes of everything but directories
tree_sum() { find "$@" \( -type d -printf '%p d %m\n' \) -o -printf '%p %y %s %m %T@ %l\n' 2>/dev/null | sort | md5sum | cut -c1-12; }
newest_run() { find "$1/runs" -mindepth 1 -maxdepth 1 -regextype egrep -regex '.*/[0-9]{8}T[0-9]{6}\.[0-9]{6}Z(-r[0-9]{3})?' -printf '%f\n' | sort | tail -1; }
cat >"$W/h.py" <<'EOF'
"""Tampering helpers: flip a byte, edit or reseal a manifest, make odd inputs."""
import hashlib, json, math, os, sys
cmd, args = sys.argv[1], sys.argv[2:]
def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()
if cmd == "flip":  # flip one byte in the middle (or at an offset), same size
    p = args[0]; size = os.path.getsize(p)
    off = int(args[1]) if len(args) > 1 else size // 2
    with open(p, "r+b") as f:
        f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0xFF]))
elif cmd == "reseal":  # recompute bytes/sha256 of every output (a forged but consistent manifest)
    run = args[0]; m = json.load(open(f"{run}/manifest.json"))
    for name in m["outputs"]:
        m["outputs"][name] = {"bytes": os.path.getsize(f"{run}/{name}"), "sha256": sha(f"{run}/{name}")}
    if len(args) > 1:
        m["params"]["dim"] = int(args[1])
    json.dump(m, open(f"{run}/manifest.json", "w"), indent=2)
elif cmd == "manifest":  # apply one edit to manifest.json
    run, edit = args; p = f"{run}/manifest.json"; m = json.load(open(p))
    if edit == "drop-outputs": del m["outputs"]
    elif edit == "dim-str": m["params"]["dim"] = str(m["params"]["dim"])
    elif edit == "dim-32": m["params"]["dim"] = 32
    elif edit == "dim-bool": m["params"]["dim"] = True
    elif edit == "bytes-float": m["outputs"]["items.ann"]["bytes"] = float(m["outputs"]["items.ann"]["bytes"])
    elif edit == "sha-upper": m["outputs"]["popular.parquet"]["sha256"] = m["outputs"]["popular.parquet"]["sha256"].upper()
    elif edit == "asof-naive": m["as_of"] = m["as_of"].replace("+00:00", "")
    elif edit == "format-2": m["format_version"] = 2
    elif edit == "list": m = [m]
    elif edit == "params-null": m["params"] = None
    json.dump(m, open(p, "w"), indent=2)
elif cmd == "npy":  # replace the embeddings by a random matrix of another width
    import numpy as np
    run, dim = args[0], int(args[1]); e = np.load(f"{run}/item_embeddings.npy")
    np.save(f"{run}/item_embeddings.npy", np.random.default_rng(0).standard_normal((e.shape[0], dim)).astype("float32"))
elif cmd == "zeros":  # same size, all zero bytes
    p = args[0]; size = os.path.getsize(p); open(p, "wb").write(b"\0" * size)
elif cmd == "events":  # hostile event logs
    import polars as pl
    src, dst, kind = args; e = pl.read_parquet(src)
    if kind == "nan-item": e = e.with_columns(pl.col("item_id").cast(pl.Float64)); e = e.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(float("nan")).otherwise(pl.col("item_id")).alias("item_id"))
    elif kind == "inf-item": e = e.with_columns(pl.col("item_id").cast(pl.Float64)); e = e.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(float("inf")).otherwise(pl.col("item_id")).alias("item_id"))
    elif kind == "year-2200":
        import datetime as dt
        e = e.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(pl.lit(dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc))).otherwise(pl.col("ts")).alias("ts"))
    elif kind == "zero-rows": e = e.head(0)
    elif kind == "dup-csv":
        e.head(50).write_csv(dst); txt = open(dst).read().split("\n", 1)
        open(dst, "w").write(txt[0].replace("session_id", "item_id") + "\n" + txt[1]); sys.exit()
    elif kind == "csv": e.head(2000).write_csv(dst); sys.exit()
    e.write_parquet(dst)
elif cmd == "bandit":  # hostile bandit logs for `rtml evaluate ope`
    import polars as pl
    src, dst, kind = args; b = pl.read_parquet(src)
    col, val = {"nan-reward": ("reward", math.nan), "inf-reward": ("reward", math.inf),
                "nan-prop": ("propensity", math.nan), "inf-prop": ("propensity", math.inf),
                "nan-action": ("action", math.nan), "inf-action": ("action", math.inf)}[kind]
    b = b.with_columns(pl.col(col).cast(pl.Float64))
    b = b.with_columns(pl.when(pl.int_range(pl.len()) == 11).then(val).otherwise(pl.col(col)).alias(col))
    b.write_parquet(dst)
EOF
H() { "$PY" "$W/h.py" "$@"; }

echo "fault pass: work dir $W, TMPDIR $TMPDIR" >&2

# ================================================================ 1. signals at each step
if want 1; then
table "1. Signals at each precompute step" \
  "signal | step | exit (expected) | stderr | latest loads | leftovers after the signal | next run: exit, leftovers, latest = newest run | verdict"
for sig in KILL TERM INT; do
  R=$W/s1-$sig
  pre --out "$R" || echo "base run failed" >&2
  case $sig in KILL) exp=137 ;; TERM) exp=143 ;; INT) exp=130 ;; esac
  prev=""
  steps=$STEPS
  [ $sig = INT ] && steps="scan features cooccurrence index write publish switch" # a subset: time
  for step in $steps; do
    if [ $sig = INT ]; then
      # SIGINT from outside: wait until the step starts (progress line "done: PREV", or the
      # lock written for scan), then send it
      # (a background job of a script starts with SIGINT ignored: restore the default first)
      "$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
        "$RTML" precompute "$EV" --items "$IT" --out "$R" --force --keep 2 >/dev/null 2>"$W/err" &
      pid=$!
      prev=$(echo $STEPS | tr ' ' '\n' | grep -B1 -x "$step" | head -1); [ "$prev" = "$step" ] && prev=""
      for _ in $(seq 3000); do
        if [ -z "$prev" ]; then grep -q "pid $pid" "$R/.lock" 2>/dev/null && break
        else grep -q "done: $prev\$" "$W/err" 2>/dev/null && break; fi
        kill -0 $pid 2>/dev/null || break
        sleep 0.005
      done
      kill -INT $pid 2>/dev/null
      wait $pid
      rc=$?
      at=$(grep -o 'done: [a-z]*' "$W/err" | tail -1 | sed 's/done: /after /')
      grep -v '^  done:' "$W/err" >"$W/err2"; mv "$W/err2" "$W/err"
    else
      hook=$step; [ $sig = TERM ] && hook=$step:TERM
      RTML_TEST_KILL_AT=$hook pre --out "$R" --force --keep 2 2>"$W/err"
      rc=$?
      sed -i '/Killed *timeout/d' "$W/err" # bash's own job message, not rtml's
      at=""
    fi
    ld=$(loads "$R")
    lo=$(left "$R")
    pre --out "$R" --keep 2 2>"$W/err3"
    rc2=$?
    lo2=$(left "$R")
    newest=$(newest_run "$R")
    same=$([ "$(readlink "$R/latest")" = "runs/$newest" ] && echo yes || echo no)
    ok="[ $rc = $exp ] && [ $ld = 0 ] && [ $rc2 = 0 ] && [ '$lo2' = none ] && [ $same = yes ]"
    [ $sig != KILL ] && ok="$ok && [ '$lo' = none ] && [ \$(wc -l <$W/err) -le 1 ]"
    row "$sig | $step${at:+ ($at)} | $rc ($exp) | $( [ -s "$W/err" ] && errline "$W/err" || echo '–') | $ld | $lo | $rc2, $lo2, $same | $(v "$ok")"
    prev=$step
  done
done
echo "area 1 done at $((SECONDS - T0)) s" >&2

fi
# ================================================================ 2. full disk
if want 2; then
table "2. Full disk (tmpfs)" \
  "command | filesystem | exit (expected 73) | stderr | used before → after (KiB) | leftovers | previous output intact | verdict"
M=$W/full
mkdir -p "$M"
if mount -t tmpfs -o size=10m tmpfs "$M" 2>"$W/err"; then
  MOUNTS+=("$M")
  used() { df --output=used -k "$M" | tail -1 | tr -d ' '; }
  # precompute: the first run fits in 10 MiB, a --force rebuild does not
  pre --out "$M/root" --as-of $ASOF 2>"$W/err"
  first=$?
  b=$(used); s0=$(tree_sum "$M/root/runs")
  pre --out "$M/root" --as-of $ASOF --force 2>"$W/err"
  rc=$?; a=$(used)
  intact=$([ "$(tree_sum "$M/root/runs")" = "$s0" ] && [ "$(loads "$M/root")" = 0 ] && echo "yes (runs/ unchanged, latest loads; first run exit $first)" || echo NO)
  lo=$(left "$M/root")
  row "precompute --force (2nd run) | tmpfs 10 MiB | $rc | $(errline "$W/err") | $b → $a | $lo | $intact | $(v "[ $rc = 73 ] && [ $a = $b ] && [ '$lo' = none ] && grep -q 'no space left' $W/err")"
  umount "$M"; mount -t tmpfs -o size=4m tmpfs "$M"
  # the other writers: a previous good output in place, then the disk filled up
  pre --out "$W/s2-art" --as-of $ASOF
  "$RTML" simulate "$EV" --artifacts "$W/s2-art" -s batch,popular --out "$M/res.parquet" -q
  H events "$EV" "$W/ev.csv" csv
  "$RTML" data import --from-format csv "$W/ev.csv" --out "$M/imp.parquet" --quiet
  "$RTML" retrain "$EV" --start 2024-03-30T00:00:00Z --step 1d --schedules never --sample 20 --dim 16 --trees 5 --out "$M/rt" -q
  "$RTML" evaluate --arm control=0.040 --arm new=0.045 --plot "$M/p.png" -q
  dd if=/dev/zero of="$M/filler" bs=4k 2>/dev/null # the disk is full: not one 4 KiB page left
  for case in simulate import retrain plot sample precompute; do
    s0=$(tree_sum "$M" -not -name filler); b=$(used)
    case $case in
      simulate) cmd=("$RTML" simulate "$EV" --artifacts "$W/s2-art" -s popular,batch,session-embedding --out "$M/res.parquet" -q) ;;
      import) cmd=("$RTML" data import --from-format parquet "$EV" --out "$M/imp.parquet" --quiet) ;;
      retrain) cmd=("$RTML" retrain "$EV" --start 2024-03-29T00:00:00Z --step 1d --schedules never,stateful --sample 20 --dim 16 --trees 5 --out "$M/rt" -q) ;;
      plot) cmd=("$RTML" evaluate --arm control=0.040 --arm new=0.045 --arm third=0.05 --plot "$M/p.png" -q) ;;
      sample) cmd=("$RTML" data sample --size tiny --out "$M/world" -q) ;;
      precompute) cmd=("$RTML" precompute "$EV" --items "$IT" --out "$M/root2" --quiet) ;;
    esac
    timeout 180 "${cmd[@]}" >/dev/null 2>"$W/err"
    rc=$?; a=$(used)
    lo=$(find "$M" -name '.tmp-*' -printf '%P ' ; find "$TMPDIR" -mindepth 1 ! -path "$TMPDIR/rtml-$(id -u)" -printf 'TMPDIR/%P ')
    s1=$(tree_sum "$M" -not -name filler)
    intact=$([ "$s1" = "$s0" ] && echo yes || echo "changed")
    row "$case | full (4 MiB tmpfs) | $rc | $(errline "$W/err") | $b → $a | ${lo:-none} | $intact | $(v "[ $rc = 73 ] && [ $a -le $((b + 8)) ] && [ -z '$lo' ] && grep -q 'no space left' $W/err")"
    cp "$W/err" "$RAW/full-$case.err"
  done
else
  row "mount -t tmpfs | refused: $(head -1 "$W/err") | – | – | – | – | – | skipped"
fi
echo "area 2 done at $((SECONDS - T0)) s" >&2

fi
# ================================================================ 3. tampering with a published run
if want 3; then
table "3. Tampering with a published run (readers: neighbors, simulate)" \
  "tampering | when | neighbors exit | simulate exit | stderr (neighbors) | verdict"
pre --out "$TB" --as-of $ASOF
pre --out "$W/t-d32" --as-of $ASOF --dim 32
D32=$(readlink -f "$W/t-d32/latest")
NOD=$(( $(stat -c %s "$TB/latest/item_embeddings.npy") ))
tamper() {
  local run=$1 case=$2
  case $case in
    ann-1841-nodes) truncate -s $((1841 * 268)) "$run/items.ann" ;;
    ann-3000-nodes) truncate -s $((3000 * 268)) "$run/items.ann" ;;
    ann-1841-nodes+resealed) truncate -s $((1841 * 268)) "$run/items.ann"; H reseal "$run" ;;
    ann-3000-nodes+resealed) truncate -s $((3000 * 268)) "$run/items.ann"; H reseal "$run" ;;
    ann-from-dim32-run) cp "$D32/items.ann" "$run/items.ann" ;;
    ann-from-dim32-run+resealed) cp "$D32/items.ann" "$run/items.ann"; H reseal "$run" ;;
    ann-zeros-same-size+resealed) H zeros "$run/items.ann"; H reseal "$run" ;;
    ann-byte-flip) H flip "$run/items.ann" ;;
    dim32-npy+ann+manifest-resealed) cp "$D32/items.ann" "$run/items.ann"; H npy "$run" 32; H reseal "$run" 32 ;;
    npy-dim32+resealed-dim32) H npy "$run" 32; H reseal "$run" 32 ;;
    parquet-byte-flip) H flip "$run/item_features.parquet" ;;
    parquet-byte-flip+mtime-restored) cp -p "$run/batch_recs.parquet" "$W/ref"; H flip "$run/batch_recs.parquet"; touch -r "$W/ref" "$run/batch_recs.parquet" ;;
    delete-batch_recs) rm "$run/batch_recs.parquet" ;;
    delete-manifest) rm "$run/manifest.json" ;;
    manifest-not-json) truncate -s 100 "$run/manifest.json" ;;
    manifest-*) H manifest "$run" "${case#manifest-}" ;;
  esac
}
CASES="ann-1841-nodes ann-3000-nodes ann-1841-nodes+resealed ann-3000-nodes+resealed ann-from-dim32-run
ann-from-dim32-run+resealed ann-zeros-same-size+resealed ann-byte-flip dim32-npy+ann+manifest-resealed
npy-dim32+resealed-dim32 parquet-byte-flip parquet-byte-flip+mtime-restored delete-batch_recs delete-manifest
manifest-not-json manifest-drop-outputs manifest-dim-str manifest-dim-32 manifest-dim-bool manifest-bytes-float
manifest-sha-upper manifest-asof-naive manifest-format-2 manifest-list manifest-params-null"
AFTER_LOAD="ann-byte-flip parquet-byte-flip parquet-byte-flip+mtime-restored ann-zeros-same-size+resealed
ann-3000-nodes+resealed npy-dim32+resealed-dim32 manifest-dim-32 delete-batch_recs"
first=""
for when in fresh after-first-load; do
  cases=$CASES; [ $when = after-first-load ] && cases=$AFTER_LOAD
  for case in $cases; do
    C=$W/t-case
    rm -rf "$C"; cp -a "$TB" "$C"
    run=$(readlink -f "$C/latest")
    rm -f "$run/.verified.json"
    if [ $when = after-first-load ]; then
      first=$(loads "$C")
      [ -f "$run/.verified.json" ] || first="$first (no stamp written!)"
    fi
    tamper "$run" "$case"
    timeout 60 "$RTML" neighbors 100000 --artifacts "$C" -k 3 >/dev/null 2>"$W/err"; n=$?
    timeout 120 "$RTML" simulate "$EV" --artifacts "$C" -s batch -q >/dev/null 2>"$W/err2"; s=$?
    cp "$W/err" "$RAW/tamper-$when-$case.err"
    nl=$(grep -c '^rtml: error' "$W/err")
    if [ $case = dim32-npy+ann+manifest-resealed ]; then # control: a consistent forgery is a valid run
      row "$case (control: a consistent dim-32 run, expected 0) | $when | $n | $s | – | $(v "[ $n = 0 ] && [ $s = 0 ]")"
    else
      row "$case | $when${first:+ (first load exit $first)} | $n | $s | $( [ -s "$W/err" ] && errline "$W/err" || echo '–') | $(v "[ $n = 65 ] && [ $s = 65 ] && [ $nl = 1 ]")"
    fi
    first=""
  done
done
# a corrupt --warm-start source
table "3b. Corrupt --warm-start run" \
  "tampering of the warm-start run | exit (expected 65) | stderr | readers on the source run | published outputs differing from a clean warm start | verdict"
rm -rf "$W/ws"; cp -a "$TB" "$W/ws"
pre --out "$W/ws-clean" --warm-start "$W/ws"
sums() { "$PY" -c "import json,sys; m=json.load(open(sys.argv[1]+'/latest/manifest.json')); print(' '.join(k+'='+v['sha256'][:12] for k,v in sorted(m['outputs'].items())))" "$1"; }
CLEAN=$(sums "$W/ws-clean")
for case in cooc-truncated cooc-byte-flip state-json-garbage state-json-no-params \
  batch_recs-byte-flip item_features-byte-flip user_features-byte-flip \
  state/item_totals-byte-flip state/user_items-byte-flip state/user_totals-byte-flip; do
  rm -rf "$W/ws" "$W/ws-out"; cp -a "$TB" "$W/ws"
  run=$(readlink -f "$W/ws/latest")
  case $case in
    cooc-truncated) truncate -s 5000 "$run/state/cooc.npz" ;;
    cooc-byte-flip) H flip "$run/state/cooc.npz" ;;
    state-json-garbage) echo '{"params": ' >"$run/state/state.json" ;;
    state-json-no-params) echo '{}' >"$run/state/state.json" ;;
    *-byte-flip) H flip "$run/${case%-byte-flip}.parquet" ;;
  esac
  rd=$(loads "$W/ws")
  pre --out "$W/ws-out" --warm-start "$W/ws" 2>"$W/err"
  rc=$?
  d=$(if [ $rc = 0 ]; then diff <(echo "$CLEAN" | tr ' ' '\n') <(sums "$W/ws-out" | tr ' ' '\n') | grep '^>' | cut -d= -f1 | tr -d '> ' | tr '\n' ' '; fi)
  row "$case | $rc | $( [ -s "$W/err" ] && errline "$W/err" || echo '–') | neighbors exit $rd | ${d:-–} | $(v "[ $rc = 65 ]")"
done
echo "area 3 done at $((SECONDS - T0)) s" >&2

fi
# ================================================================ 4. readers during --force
if want 4; then
table "4. Readers while precompute --force --keep 1 rebuilds (alternating --dim 32/64)" \
  "reader | loads / runs | failures | messages | verdict"
R4=$W/s4
pre --out "$R4" --as-of $ASOF --dim 32
DUR=${FAULT_PASS_READ_SECONDS:-50}
cat >"$W/reader.py" <<'EOF'
import collections, sys, time
from rtml_cli.batch.artifacts import load_artifacts
from rtml_cli.errors import RtmlError
root, dur = sys.argv[1], float(sys.argv[2])
n = mixed = 0; fails = collections.Counter(); end = time.time() + dur
while time.time() < end:
    try:
        a = load_artifacts(root)
        dim = a.manifest["params"]["dim"]
        ok = dim == a.embeddings.shape[1] == a.index.f and len(a.index.get_nns_by_item(0, 10)) == 10
        n += 1
        if not ok:
            mixed += 1
    except RtmlError as exc:
        fails[f"{type(exc).__name__}: {str(exc)[:110]}"] += 1
    except Exception as exc:  # noqa
        fails[f"UNEXPECTED {type(exc).__name__}: {str(exc)[:110]}"] += 1
print(n, mixed, sum(fails.values()))
for k, c in fails.most_common(5):
    print(c, k)
EOF
(
  i=0; ok=0; bad=0; end=$((SECONDS + DUR))
  while [ $SECONDS -lt $end ]; do
    d=$([ $((i % 2)) = 0 ] && echo 64 || echo 32)
    if pre --out "$R4" --as-of $ASOF --dim $d --force --keep 1 2>>"$W/s4-writer.err"; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
    i=$((i + 1))
  done
  echo "$i $ok $bad" >"$W/s4-writer"
) &
BG+=($!)
"$PY" "$W/reader.py" "$R4" "$DUR" >"$W/s4-reader" 2>&1 &
BG+=($!)
(
  n=0; f=0; : >"$W/s4-cli.err"; end=$((SECONDS + DUR))
  while [ $SECONDS -lt $end ]; do
    timeout 120 "$RTML" simulate "$EV" --artifacts "$R4" -s batch,session-embedding -q >/dev/null 2>"$W/e1"; rc=$?
    n=$((n + 1)); [ $rc = 0 ] || { f=$((f + 1)); echo "exit $rc: $(head -1 "$W/e1")" >>"$W/s4-cli.err"; }
  done
  echo "$n $f" >"$W/s4-cli"
) &
BG+=($!)
wait "${BG[@]}"
BG=()
read -r wn wok wbad <"$W/s4-writer"
row "writer: precompute --force --keep 1 | $wn runs | $wbad | $(head -1 "$W/s4-writer.err" | cut -c1-120) | $(v "[ $wbad = 0 ]")"
read -r rn rmixed rfail <<<"$(head -1 "$W/s4-reader")"
row "load_artifacts loop (dim == embeddings.shape[1] == index.f, get_nns_by_item) | $rn loads, $rmixed mixed | $rfail | $(tail -n +2 "$W/s4-reader" | tr '\n' ';' | sed 's/|/\\|/g' | cut -c1-300) | $(v "[ $rmixed = 0 ] && [ $rfail = 0 ]")"
read -r cn cf <"$W/s4-cli"
row "rtml simulate -s batch,session-embedding (serial loop) | $cn runs | $cf | $(sort "$W/s4-cli.err" | uniq -c | head -3 | tr '\n' ';' | cut -c1-300) | $(v "[ $cf = 0 ]")"
row "after: runs/ holds | $(ls "$R4/runs" | tr '\n' ' ') | leftovers: $(left "$R4") | latest → $(readlink "$R4/latest") | $(v "[ '$(left "$R4")' = none ]")"
echo "area 4 done at $((SECONDS - T0)) s" >&2

fi
# ================================================================ 5. output options
if want 5; then
table "5. Output options pointing at things rtml did not write" \
  "command | --out / --plot is | exit (expected 73) | stderr | untouched | verdict"
U=$W/s5
mkdir -p "$U/userdir" "$U/cwd"
echo "precious" >"$U/userdir/notes.txt"
echo "precious" >"$U/cwd/notes.txt"
echo "precious text" >"$U/file.txt"
ln -s "$U/userdir" "$U/link-to-dir"
ln -s "$U/file.txt" "$U/link-to-file"
pre --out "$U/art" --as-of $ASOF
for c in simulate retrain plot import sample; do
  for target in userdir dot link-to-dir link-to-file file.txt; do
    t=$U/$target; [ $target = dot ] && t=.
    case $c in
      simulate) cmd=("$RTML" simulate "$EV" --artifacts "$U/art" -s batch --out "$t" -q) ;;
      retrain) cmd=("$RTML" retrain "$EV" --start 2024-03-30T00:00:00Z --step 1d --schedules never --sample 20 --dim 16 --trees 5 --out "$t" -q) ;;
      plot) cmd=("$RTML" evaluate --arm control=0.040 --arm new=0.045 --plot "$t" -q) ;;
      import) cmd=("$RTML" data import --from-format parquet "$EV" --out "$t" --quiet) ;;
      sample) cmd=("$RTML" data sample --size tiny --out "$t" -q) ;;
    esac
    s0=$(tree_sum "$U" -not -path "$U/art*")
    (cd "$U/cwd" && timeout 180 "${cmd[@]}" >/dev/null 2>"$W/err")
    rc=$?
    s1=$(tree_sum "$U" -not -path "$U/art*")
    same=$([ "$s0" = "$s1" ] && echo yes || echo NO)
    row "$c | $target | $rc | $(errline "$W/err") | $same | $(v "[ $rc = 73 ] && [ $same = yes ] && [ \$(wc -l <$W/err) = 1 ]")"
  done
done
echo "area 5 done at $((SECONDS - T0)) s" >&2

fi
# ================================================================ 6. planted links and odd ROOTs
if want 6; then
table "6. Planted links and odd ROOTs" \
  "setup | exit (expected) | stderr | result | verdict"
P=$W/s6
mkdir -p "$P/victim-dir" "$P/elsewhere"
echo "victim" >"$P/victim"; echo keep >"$P/victim-dir/f"; echo keep >"$P/elsewhere/f"
vs() { tree_sum "$P/victim" "$P/victim-dir" "$P/elsewhere"; }
V0=$(vs)
odd() { # name expected-exit setup-commands...
  local name=$1 exp=$2; shift 2
  local R=$P/root-$name; mkdir -p "$R"; (cd "$R" && eval "$@")
  local s0; s0=$(tree_sum "$R")
  pre --out "$R" 2>"$W/err"; local rc=$?
  local same; same=$([ "$(tree_sum "$R")" = "$s0" ] && echo "ROOT untouched" || echo "ROOT changed")
  local vic; vic=$([ "$(vs)" = "$V0" ] && echo "victims intact" || echo "VICTIMS CHANGED")
  row "$name: \`$*\` | $rc ($exp) | $( [ -s "$W/err" ] && errline "$W/err" || echo '–') | $same, $vic | $(v "[ $rc = $exp ] && [ '$vic' = 'victims intact' ] && { [ $exp = 0 ] || [ '$same' = 'ROOT untouched' ]; }")"
}
odd lock-link 73 "ln -s ../victim .lock"
odd runs-link 73 "ln -s ../elsewhere runs"
odd latest-dir 73 "mkdir latest && echo x >latest/f"
odd latest-elsewhere 73 "ln -s ../elsewhere latest"
odd latest-file 73 "echo x >latest"
odd spill-link-planted 0 "ln -s ../victim-dir .tmp-spill-1-abc"
odd tmp-run-link-planted 0 "mkdir runs && ln -s ../../victim-dir runs/.tmp-20240101T000000.000000Z-abc"
odd tmp-not-ours 0 "mkdir -p runs/.tmp-my-notes && echo x >runs/.tmp-my-notes/f"
echo x >"$P/root-file"
pre --out "$P/root-file" 2>"$W/err"; rc=$?
row "ROOT is a file | $rc (73) | $(errline "$W/err") | $(cat "$P/root-file") | $(v "[ $rc = 73 ]")"
# foreign entries in runs/ and --keep 1
R=$P/keep
pre --out "$R" --as-of 2024-03-29T00:00:00Z
mkdir -p "$R/runs/my-backup" "$R/runs/2023-archive" "$R/runs/20200101T000000.000000Z" "$R/runs/20200102T000000.000000Z" "$R/runs/.tmp-my-notes"
echo x >"$R/runs/my-backup/f"; echo x >"$R/runs/2023-archive/f"; echo x >"$R/runs/20200101T000000.000000Z/f"
echo '{"run_id": "somebody-else"}' >"$R/runs/20200102T000000.000000Z/manifest.json"
pre --out "$R" --as-of 2024-03-30T00:00:00Z
pre --out "$R" --as-of 2024-03-31T00:00:00Z
pre --out "$R" --keep 1 2>"$W/err"; rc=$?
row "runs/my-backup, runs/2023-archive, an id-named dir without manifest, one with another run_id, runs/.tmp-my-notes; 4 runs; --keep 1 | $rc (0) | $( [ -s "$W/err" ] && errline "$W/err" || echo '–') | runs/ now: $(ls -A "$R/runs" | sed -E 's/[0-9]{8}T[0-9]{6}\.[0-9]{6}Z/&/' | tr '\n' ' ') | $(v "[ $rc = 0 ] && [ -f $R/runs/my-backup/f ] && [ -f $R/runs/2023-archive/f ] && [ -f $R/runs/20200101T000000.000000Z/f ] && [ -f $R/runs/20200102T000000.000000Z/manifest.json ] && [ -d $R/runs/.tmp-my-notes ] && [ ! -d $R/runs/20240329T000000.000000Z ] && [ ! -d $R/runs/20240330T000000.000000Z ]")"
# a log with a row in year 2200
H events "$EV" "$W/ev2200.parquet" year-2200
R=$P/y2200; pre --out "$R"; before=$(readlink "$R/latest")
"$RTML" precompute "$W/ev2200.parquet" --items "$IT" --out "$R" --quiet 2>"$W/err"; rc=$?
row "events with one row in year 2200 | $rc (65) | $(errline "$W/err") | latest $( [ "$(readlink "$R/latest")" = "$before" ] && echo unchanged || echo MOVED), runs: $(ls "$R/runs" | wc -l) | $(v "[ $rc = 65 ] && [ '$(readlink "$R/latest")' = '$before' ]")"
# permissions under umask 022 and 077
for um in 022 077; do
  R=$P/umask$um
  (umask $um; pre --out "$R"; pre --out "$R" --force)
  run=$(readlink -f "$R/latest")
  perms="runs $(stat -c %a "$R/runs") run $(stat -c %a "$run") state $(stat -c %a "$run/state") manifest $(stat -c %a "$run/manifest.json") items.ann $(stat -c %a "$run/items.ann") .lock $(stat -c %a "$R/.lock")"
  exp=$([ $um = 022 ] && echo "runs 755 run 755 state 755 manifest 644 items.ann 644 .lock 644" || echo "runs 700 run 700 state 700 manifest 600 items.ann 600 .lock 600")
  row "umask $um: precompute, then --force | – | – | $perms | $(v "[ '$perms' = '$exp' ]")"
done
# --force past -r999: the rebuild number has three digits in RUN_ID_RE
R=$P/r999; pre --out "$R" --as-of $ASOF
base=$(readlink "$R/latest" | sed 's|runs/||')
cp -a "$R/runs/$base" "$R/runs/$base-r999"
"$PY" -c "import json,sys; p=sys.argv[1]+'/manifest.json'; m=json.load(open(p)); m['run_id']=sys.argv[2]; json.dump(m,open(p,'w'))" "$R/runs/$base-r999" "$base-r999"
pre --out "$R" --as-of $ASOF --force --keep 1 2>"$W/err"; rc=$?
row "--force when runs/<id>-r999 exists | $rc (0, or a clear error) | $( [ -s "$W/err" ] && errline "$W/err" || echo '–') | runs: $(ls "$R/runs" | sed "s/$base/ID/" | tr '\n' ' '); latest → $(readlink "$R/latest" | sed "s/$base/ID/") | $(v "[ $rc != 0 ] || [ '$(readlink "$R/latest")' = 'runs/$(newest_run "$R")' ] && [ ! -d '$R/runs/$base-r1000' ]")"
echo "area 6 done at $((SECONDS - T0)) s" >&2

fi
# ================================================================ 7. hostile inputs
if want 7; then
[ -e "$TB/latest" ] || pre --out "$TB" --as-of $ASOF
table "7. Hostile inputs" \
  "input | command | exit (expected) | stderr | verdict"
hostile() { # name expected cmd...
  local name=$1 exp=$2; shift 2
  timeout 180 "$@" >/dev/null 2>"$W/err"; local rc=$?
  row "$name | rtml $2 $( [ "$2" = evaluate ] || [ "$2" = data ] && echo "$3") | $rc ($exp) | $( [ -s "$W/err" ] && errline "$W/err" || echo '–') | $(v "[ $rc = $exp ] && [ \$(grep -c '^rtml: error' $W/err) -le 1 ]")"
}
for k in nan-reward inf-reward nan-prop inf-prop nan-action inf-action; do
  H bandit "$BANDIT" "$W/b-$k.parquet" $k
  hostile "bandit log, one $k" 65 "$RTML" evaluate ope "$W/b-$k.parquet" --policy uniform -b 10 -q
done
for k in nan-item inf-item zero-rows; do
  H events "$EV" "$W/e-$k.parquet" $k
  hostile "events, one $k" 65 "$RTML" precompute "$W/e-$k.parquet" --out "$W/s7-$k" --quiet
done
H events "$EV" "$W/e-nan-item.parquet" nan-item
hostile "events with a NaN item_id (simulate)" 65 "$RTML" simulate "$W/e-nan-item.parquet" --artifacts "$TB" -s batch -q
: >"$W/empty.parquet"
hostile "empty file (0 bytes), precompute" 65 "$RTML" precompute "$W/empty.parquet" --out "$W/s7-e" --quiet
hostile "empty file (0 bytes), evaluate ope" 65 "$RTML" evaluate ope "$W/empty.parquet" --policy uniform -q
echo "ts,user_id" >"$W/text.parquet"
hostile "text file named .parquet, precompute" 65 "$RTML" precompute "$W/text.parquet" --out "$W/s7-t" --quiet
hostile "text file named .parquet, simulate" 65 "$RTML" simulate "$W/text.parquet" --artifacts "$TB" -s batch -q
hostile "text file named .parquet, data import" 65 "$RTML" data import --from-format parquet "$W/text.parquet" --out "$W/s7-imp.parquet" --quiet
head -c 20000 "$EV" >"$W/trunc.parquet"
hostile "Parquet truncated to 20 kB" 65 "$RTML" precompute "$W/trunc.parquet" --out "$W/s7-tr" --quiet
cp "$EV" "$W/ev[1].parquet"
hostile "file name with [ and ]" 0 "$RTML" precompute "$W/ev[1].parquet" --items "$IT" --out "$W/s7-br" --quiet
H events "$EV" "$W/dup.csv" dup-csv
hostile "CSV with a duplicate header (item_id twice)" 65 "$RTML" data import --from-format csv "$W/dup.csv" --out "$W/s7-dup.parquet" --quiet
printf '' >"$W/empty.csv"
hostile "empty CSV" 65 "$RTML" data import --from-format csv "$W/empty.csv" --out "$W/s7-ec.parquet" --quiet
echo "area 7 done at $((SECONDS - T0)) s" >&2

fi
{ echo; echo "Total wall time of the pass: $((SECONDS - T0)) s."; } >>"$RES"
echo "results: $RES" >&2
