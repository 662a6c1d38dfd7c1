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
