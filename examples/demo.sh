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

# --- Stage 1: the batch job -------------------------------------------------
step "Stage 1: batch features, item embeddings, Annoy index and batch recommendations" \
  "$RTML" precompute sample_data/shop/events.parquet --items sample_data/shop/items.parquet --out "$OUT/artifacts" --keep 3
step "Do the embeddings make sense? Nearest items to a keyboard" \
  "$RTML" neighbors 100000 --artifacts "$OUT/artifacts" -k 8
step "Running the same job again is a no-op (safe to retry from cron)" \
  "$RTML" precompute sample_data/shop/events.parquet --items sample_data/shop/items.parquet --out "$OUT/artifacts" --quiet
