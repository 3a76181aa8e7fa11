#!/usr/bin/env bash
# One cross-validation arm with its folds split over parallel processes on one lent GPU, time-boxed: a batch-32
# DenseNet121 fine-tuning leaves most of the GPU idle, so FOLD_GROUPS (groups split by '|') run side by side, each
# into $RUNS/partK. experiments/pool_predictions.py then pools their test predictions here. Parts still running
# DEADLINE_S seconds after the start are stopped (their finished folds stay in folds_done.json).
# Example, the random-init arm at 3e-4 that docs/results.md section 5c lacks:
#   OUT=/some/folder INIT=random LR=3e-4 bash experiments/gpu/run_folds_parallel.sh
# Back: $OUT/gpu_runs.tar.gz (each part's results, predictions and log). Smoke test on a CPU: SMOKE=1 OUT=runs/smoke ...
set -uo pipefail
OUT=${OUT:-runs/gpu_out}
PAYLOAD=${PAYLOAD:-.gpu_payload}
RUNS=${RUNS:-runs/gpu/fold_runs}
DEADLINE_S=${DEADLINE_S:-240}
INIT=${INIT:-random}
LR=${LR:-3e-4}
IFS='|' read -r -a GROUPS_OF_FOLDS <<< "${FOLD_GROUPS:-1 2|3 4|5}"
source experiments/gpu/common.sh

if [ "${SMOKE:-0}" = 1 ]; then
  FT_ARGS=("${SMOKE_DEFAULT_FINETUNE_ARGS[@]}")
else
  FT_ARGS=()
fi

install_wheels || { log "installing the wheels failed"; exit 1; }
record_environment
log "set up: $(grep -m1 -o 'NVIDIA [A-Z0-9]*' "$RUNS/environment.txt" || echo no GPU); init $INIT, lr $LR"
PARTS=()
for index in "${!GROUPS_OF_FOLDS[@]}"; do
  read -r -a folds <<< "${GROUPS_OF_FOLDS[$index]}"
  finetune_run finetune_gpu_default.yaml "part$index" --init "$INIT" --learning-rate "$LR" --no-final-model \
    "${FT_ARGS[@]}" --folds "${folds[@]}" &
  PARTS+=($!)
done
wait "${PARTS[@]}"
log "all parts done"
pack_results
