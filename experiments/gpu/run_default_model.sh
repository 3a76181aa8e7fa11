#!/usr/bin/env bash
# A default-model candidate (DenseNet121) on one lent GPU, time-boxed (about 8 minutes): DenseNet121 at 224 px, the paper's
# backbone, which the 2-core CPU cannot train. InfoNCE pretraining on the lung clips (the loss with the best
# pretraining monitor and pooled AUC at paper scale, docs/results.md 1b; experiments/configs/pretrain_gpu_lung.yaml,
# P = 16, N = 111) for at most PRETRAIN_MIN minutes, then fine-tuning on BUS-BRA's official 5 folds plus a final
# model (experiments/configs/finetune_gpu_default.yaml, 15 epochs) at two learning rates side by side; the rate is
# chosen by mean inner-validation AUC (experiments/choose_by_validation.py, never a test fold) and the chosen run is
# exported with training.export. A random-init arm at 1e-3 runs alongside the pretraining, for comparison only.
# Fine-tuning still running DEADLINE_S seconds after the start is stopped (finished folds are kept).
#
# Prepare here (experiments/gpu/run_paper_scale.sh says how to fill .gpu_payload/: stores as JPEG, wheels).
# Run there:  OUT=/some/folder bash experiments/gpu/run_default_model.sh
# Back: $OUT/model.safetensors (the chosen model's fp16 weights) and $OUT/gpu_runs.tar.gz (logs, results, figures and
# the exported folder without its weights). Smoke test on a CPU:  SMOKE=1 OUT=runs/smoke bash experiments/gpu/...
set -uo pipefail
OUT=${OUT:-runs/gpu_out}
PAYLOAD=${PAYLOAD:-.gpu_payload}
RUNS=${RUNS:-runs/gpu/default_runs}
STEPS=${STEPS:-800}                # pretraining steps; the wall-clock guard below usually ends it first
PRETRAIN_MIN=${PRETRAIN_MIN:-2.5}
DEADLINE_S=${DEADLINE_S:-500}
LEARNING_RATES=(${LEARNING_RATES:-3e-4 1e-3})
source experiments/gpu/common.sh

if [ "${SMOKE:-0}" = 1 ]; then
  PRE_ARGS=("${SMOKE_PRETRAIN_ARGS[@]}")
  FT_ARGS=("${SMOKE_DEFAULT_FINETUNE_ARGS[@]}")
  STEPS=4 PRETRAIN_MIN=1
else
  PRE_ARGS=(--num-workers 10) FT_ARGS=()
fi

finetune_arm() {  # NAME LEARNING_RATE INIT_ARGS...
  local name=$1 rate=$2; shift 2
  finetune_run finetune_gpu_default.yaml "$name" --learning-rate "$rate" "$@" "${FT_ARGS[@]}"
}

export_chosen() {  # choose the learning rate on validation, export that run into $RUNS/export
  local finished=()
  for rate in "${LEARNING_RATES[@]}"; do
    [ -f "$RUNS/ft_info_nce_lr$rate/results.json" ] && finished+=("$RUNS/ft_info_nce_lr$rate/results.json")
  done
  [ ${#finished[@]} -gt 0 ] || { log "no pretrained fine-tuning run finished: nothing to export"; return 1; }
  local chosen
  chosen=$($PY experiments/choose_by_validation.py "${finished[@]}" --output "$RUNS/lr_choice.json" \
    --choice "learning rate" | tail -1)
  log "chosen on validation: $chosen"
  $PY -m training.export --kind classifier --model-dir "$chosen/final_model" --results "$chosen/results.json" \
    --pretrain-dir "$RUNS/pretrain_info_nce" --repo-id usvcl/usvcl-densenet121-busbra --output "$RUNS/export" \
    > "$RUNS/export.log" 2>&1 || { log "export failed: $(tail -3 "$RUNS/export.log")"; return 1; }
  cp "$RUNS/export/model.safetensors" "$OUT/model.safetensors"
  log "exported $chosen ($(du -h "$OUT/model.safetensors" | cut -f1) of weights)"
}

install_wheels || { log "installing the wheels failed"; exit 1; }
record_environment
log "set up: $(grep -m1 -o 'NVIDIA [A-Z0-9]*' "$RUNS/environment.txt" || echo no GPU)"
start_gpu_usage_log
finetune_arm ft_random_lr1e-3 1e-3 --init random --no-final-model &
RANDOM_ARM=$!
$PY -m training.pretrain --config $EXP/pretrain_gpu_lung.yaml --store-paths "${LUNG[@]}" \
  --monitor-store "$STORES/bus_bra" --output-dir "$RUNS/pretrain_info_nce" --loss info_nce \
  --max-steps "$STEPS" --warmup-steps $(( STEPS / 10 + 1 )) --monitor-every $(( STEPS / 4 )) \
  --max-wall-minutes "$PRETRAIN_MIN" "${PRE_ARGS[@]}" > "$RUNS/pretrain_info_nce.log" 2>&1
log "pretraining finished (rc $?): $(grep -o 'Stopped at step [0-9]*' "$RUNS/pretrain_info_nce.log" || echo "$STEPS steps")"
ARMS=()
for rate in "${LEARNING_RATES[@]}"; do
  finetune_arm "ft_info_nce_lr$rate" "$rate" --init pretrained --pretrained-path "$RUNS/pretrain_info_nce/model" &
  ARMS+=($!)
done
wait "${ARMS[@]}"
export_chosen
wait "$RANDOM_ARM"
kill "$USAGE_PID" 2>/dev/null
log "all done"
pack_results
