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
