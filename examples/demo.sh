#!/usr/bin/env bash
# End-to-end demo on sample_data/: what `make demo` runs.
# RTML (the rtml executable) and OUT (a scratch directory) come from the Makefile.
set -euo pipefail
RTML=${RTML:-rtml}
OUT=${OUT:-demo_out}
mkdir -p "$OUT"
# Each reporting step also saves its JSON document here (rtml --save-json), for the report at
# the end; the tables stay on the terminal for people.
DOCS="$OUT/json"
mkdir -p "$DOCS"

step() { printf '\n\033[1m== %s ==\033[0m\n$ %s\n' "$1" "${*:2}" >&2; "${@:2}"; }

# --- data -----------------------------------------------------------------
step "The data contracts rtml reads" "$RTML" data contracts
# The committed sample world (sample_data/shop) was made by the command below; regenerating the
# tiny size shows what it writes and its ground truth in about a second.
step "A sample shop with known ground truth (tiny size)" "$RTML" data sample --out "$OUT/world" --size tiny --seed 7

# --- real bandit logs: the Open Bandit Dataset sample (CC BY 4.0) ----------
mkdir -p "$OUT/obd"
step "Import the OBD log of the uniformly random policy" \
  "$RTML" data import --from-format obd sample_data/obd/random/men/men.csv.gz --out "$OUT/obd/random.parquet"
step "Import the OBD log of the Bernoulli Thompson Sampling policy" \
  "$RTML" data import --from-format obd sample_data/obd/bts/men/men.csv.gz --out "$OUT/obd/bts.parquet"
step "Validate the imported bandit log" "$RTML" data validate "$OUT/obd/bts.parquet"
step "Validate the sample shop's event log" \
  "$RTML" --save-json "$DOCS/validate-events.json" data validate sample_data/shop/events.parquet

# --- Stage 1: the batch job -------------------------------------------------
step "Stage 1: batch features, item embeddings, Annoy index and batch recommendations" \
  "$RTML" precompute sample_data/shop/events.parquet --items sample_data/shop/items.parquet --out "$OUT/artifacts" --keep 3
step "Do the embeddings make sense? Nearest items to a keyboard" \
  "$RTML" neighbors 100000 --artifacts "$OUT/artifacts" -k 8
step "Running the same job again is a no-op (safe to retry from cron)" \
  "$RTML" precompute sample_data/shop/events.parquet --items sample_data/shop/items.parquet --out "$OUT/artifacts"

# --- Stages 2-3: replay the sessions after the batch run (rtml simulate) ---------
# The batch run is as of the world's history cutoff (world.json); the replay serves the day after.
CUTOFF=2024-03-22T16:00:00Z
DAY_AFTER=2024-03-23T16:00:00Z
step "Batch artifacts as of the history cutoff, for the replay" \
  "$RTML" precompute sample_data/shop/events.parquet --items sample_data/shop/items.parquet \
    --out "$OUT/replay-artifacts" --as-of "$CUTOFF" --quiet
step "Replay a day of sessions: batch vs session strategies vs online-ranker (+ ablation, freshness)" \
  "$RTML" --save-json "$DOCS/simulate.json" simulate sample_data/shop/events.parquet --artifacts "$OUT/replay-artifacts" \
    --end "$DAY_AFTER" --ablation --freshness-sweep 0s,1h --out "$OUT/results.parquet"

# --- bandits vs A/B testing ---------------------------------------------------
# Planning: how long would an A/B test of a +12.5% lift take, and what would a bandit save?
step "Bandits vs an A/B test for a 4.0% -> 4.5% click rate (planning mode)" \
  "$RTML" --save-json "$DOCS/bandits-planning.json" evaluate --arm control=0.040 --arm new=0.045 --seeds 100 --plot "$OUT/bandits_planning.png"
# Replay: the strategies `rtml simulate` scored on every request are the arms. The migration
# question: keep the batch model, or move to session embeddings or the online ranker?
step "Bandits vs an A/B test choosing between batch, session-embedding and online-ranker" \
  "$RTML" --save-json "$DOCS/bandits-results.json" evaluate "$OUT/results.parquet" --arms batch,session-embedding,online-ranker \
    --reward hit --plot "$OUT/bandits_results.png"

# --- off-policy evaluation and contextual bandits ---------------------------
# The OBD paper's protocol on real data: the Thompson-sampling policy's CTR estimated from the
# uniformly random log (IPS, SNIPS, DM, DR, SNDR, Switch-DR, bootstrap CIs), next to the CTR
# the TS policy actually got in its own log.
step "Off-policy: estimate the TS policy from the random OBD log, vs its own CTR" \
  "$RTML" --save-json "$DOCS/ope-obd.json" evaluate ope "$OUT/obd/random.parquet" --policy "log:$OUT/obd/bts.parquet" \
  --ground-truth "$OUT/obd/bts.parquet"
step "Off-policy: a linear contextual policy learned from the shop's logs (weights warn)" \
  "$RTML" --save-json "$DOCS/ope-linear.json" evaluate ope sample_data/shop/bandit.parquet --policy linear:0.1 --bootstrap 500
step "Contextual bandits vs the 'most clickable' trap in the sample world" \
  "$RTML" --save-json "$DOCS/contextual.json" evaluate contextual sample_data/shop --plot "$OUT/contextual_regret.png"
step "The same policies replayed on the real OBD random log (can the log decide?)" \
  "$RTML" evaluate contextual --log "$OUT/obd/random.parquet" --items "$OUT/obd/random.items.parquet"

# --- continual learning -----------------------------------------------------
# Exit code 10 means "drift detected" (what a cron job branches on), so the demo accepts it.
step "Did item popularity drift on the day after the known shift? (exit 10 = yes)" \
  "$RTML" --save-json "$DOCS/drift.json" drift popularity sample_data/shop/events.parquet --end 2024-03-25 || [ $? -eq 10 ]
step "Stateless vs stateful vs drift-triggered retraining around the shift" \
  "$RTML" --save-json "$DOCS/retrain.json" retrain sample_data/shop/events.parquet --start 2024-03-21 --end 2024-03-27 \
    --schedules stateless:1d,stateful:1d,triggered,never --sample 4 \
    --out "$OUT/retrain" --plot "$OUT/retrain.png"

# --- the report -------------------------------------------------------------
# Everything above in one document for people who never run a terminal: the verdict first,
# each claim with its number and 95% interval, then one section per question.
step "The migration report, as one self-contained HTML page" \
  "$RTML" report "$DOCS" "$OUT/results.parquet" "$OUT/replay-artifacts" --out "$OUT/report.html"
step "The same report as Markdown, its charts beside it" \
  "$RTML" report "$DOCS" "$OUT/results.parquet" "$OUT/replay-artifacts" --out "$OUT/report.md" \
    --format md --quiet
# --- your own log: the same answer in one command ---------------------------------
# What a team runs on its own export (see README, "Your own logs"): validate, precompute as
# of the holdout's start, replay the holdout, drift, bandits, report — resumable.
step "Your own log in one command: rtml migrate (last day held out)" \
  "$RTML" migrate sample_data/shop/events.parquet --items sample_data/shop/items.parquet \
    --out "$OUT/migrate" --holdout 1d --seeds 20
printf '\nReport: %s\n        %s (charts in %s)\n' "$OUT/report.html" "$OUT/report.md" "$OUT/report_files/"
