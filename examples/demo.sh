#!/usr/bin/env bash
# End-to-end demo on sample_data/: what `make demo` runs.
# RTML (the rtml executable) and OUT (a scratch directory) come from the Makefile.
set -euo pipefail
RTML=${RTML:-rtml}
OUT=${OUT:-demo_out}
mkdir -p "$OUT"
export COLUMNS=${COLUMNS:-110}

step() { printf '\n\033[1m== %s ==\033[0m\n$ %s\n' "$1" "${*:2}" >&2; "${@:2}"; }

# --- data -----------------------------------------------------------------
step "The data contracts rtml reads" "$RTML" data contracts
# The committed sample world (sample_data/shop) was made by the command below; regenerating the
# tiny size shows what it writes and its ground truth in about a second.
step "A sample shop with known ground truth (tiny size)" "$RTML" data sample --out "$OUT/world" --size tiny --seed 7

# --- real bandit logs: the Open Bandit Dataset sample (CC BY 4.0) ----------
mkdir -p "$OUT/obd"
step "Import the OBD log of the uniformly random policy" \
  "$RTML" data import --format obd sample_data/obd/random/men/men.csv.gz --out "$OUT/obd/random.parquet"
step "Import the OBD log of the Bernoulli Thompson Sampling policy" \
  "$RTML" data import --format obd sample_data/obd/bts/men/men.csv.gz --out "$OUT/obd/bts.parquet"
step "Validate the imported bandit log" "$RTML" data validate "$OUT/obd/bts.parquet"
step "Validate the sample shop's event log" "$RTML" data validate sample_data/shop/events.parquet

# --- continual learning -----------------------------------------------------
# Exit code 10 means "drift detected" (what a cron job branches on), so the demo accepts it.
step "Did item popularity drift on the day after the known shift? (exit 10 = yes)" \
  "$RTML" drift popularity sample_data/shop/events.parquet --end 2024-03-25 || [ $? -eq 10 ]
if "$RTML" retrain --help >/dev/null 2>&1 && [ -d src/rtml_cli/online ]; then
  step "Stateless vs stateful vs drift-triggered retraining around the shift" \
    "$RTML" retrain sample_data/shop/events.parquet --start 2024-03-21 --end 2024-03-27 \
      --schedules stateless:1d,stateful:1d,triggered,never --sample 4 --dim 32 \
      --out "$OUT/retrain" --plot "$OUT/retrain.png"
fi
