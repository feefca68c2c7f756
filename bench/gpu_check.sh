#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): tests marked cuda, matmul probes, a 500-step pixel-reward
# REINFORCE run on large against the official per-sample loop, bench.run_all on small and large.
# At most 8 minutes on one GPU; writes bench/gpu/gpu_check.json, which
# `python scripts/update_readme.py --only gpu` turns into the README's GPU table.
#   bash bench/gpu_check.sh               # on a GPU machine
#   bash bench/gpu_check.sh --dry-run     # the same on the CPU at the smallest sizes (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
exec timeout --signal=INT 480 "$PYTHON" -m bench.gpu_check "$@"
