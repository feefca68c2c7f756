#!/usr/bin/env bash
# Recorded check (issue 21): a reduced pipeline on the tiny model; results.csv / sweep.csv / taskness.csv
# must be identical before and after the engine refactor. Usage: reduced_pipeline.sh <repo dir> <out dir>
set -euo pipefail
REPO=$1; OUT=$2
export PYTHONPATH=$REPO OMP_NUM_THREADS=1  # one thread: before and after are compared bit for bit
I="${PYTHON:-python} -m interp.cli"
cd "$REPO"
rm -rf "$OUT"
COMMON="--run $OUT --n-collect 16 --n-candidates 32 --n-train 4 --n-search-eval 8 --n-eval 16"
$I collect $COMMON
$I taskness $COMMON > /dev/null
$I search $COMMON --steps 12 --samples 24 --eval-every 4 --reward token --select threshold --init 0.3
$I sweep $COMMON --sweep-prompts 4
$I evaluate $COMMON
$I search $COMMON --method gradient
$I compare-search $COMMON --tasks segmentation,inpainting --seeds 1 --compare-eval 8 --compare-search-eval 4 --methods reinforce,attribution,random,taskness
