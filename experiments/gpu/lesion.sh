#!/usr/bin/env bash
# The lesion segmenter (issue #16) on one lent GPU, time-boxed (about 7 minutes), beside other arms: an ImageNet
# EfficientNet-Lite0 encoder (offline weights, training.imagenet_init) with a U-Net decoder at 224 px, trained on
# BUS-BRA's masks over the official 5 folds (inner validation redrawn by patient) plus a final model on every image
# (training.lesion.train), the two side by side (2 + 1 data workers: at most 3, the machine's cores are shared with the
# other arms); the final model then takes the folds' validation choices (training.lesion.choices).
# The packed BUS-BRA store must have the `mask` column (python -m training.prepare_data images ... adds it; then
# experiments/gpu/pack_stores.py keeps it).
#
# Run there:  OUT=/some/folder bash experiments/gpu/lesion.sh
# Back: $OUT/lesion_model.safetensors (the final model's weights in float16) and $OUT/lesion_runs.tar.gz (lesion/:
# results.json, results.md, predictions.csv; lesion_final/: combined_results.json and final_model/ without weights;
# the logs).
# Smoke test on a CPU (tiny backbone, fold 1, same steps):  SMOKE=1 OUT=runs/smoke bash experiments/gpu/lesion.sh
set -uo pipefail
OUT=${OUT:-runs/gpu_out}
PAYLOAD=${PAYLOAD:-.gpu_payload}
RUNS=${RUNS:-runs/gpu/lesion_runs}
DEADLINE_S=${DEADLINE_S:-420}
EPOCHS=${EPOCHS:-8}
source experiments/gpu/common.sh

if [ "${SMOKE:-0}" = 1 ]; then
  LESION_ARGS=(--init random --backbone test_efficientnet --image-size 48 --decoder-channels 16 8 --batch-size 8
               --bootstrap-samples 50 --crop-margin 2 --min-crop-side 6 --mixed-precision no)
  CV_ARGS=(--folds 1 --num-workers 0) FINAL_ARGS=(--num-workers 0) EPOCHS=2
else
  LESION_ARGS=(--init imagenet --image-size 224 --batch-size 32 --eval-batch-size 64 --learning-rate 1e-3
               --mixed-precision bf16)
  CV_ARGS=(--num-workers 2) FINAL_ARGS=(--num-workers 1)
fi

lesion_run() {  # NAME OPTIONS...: training.lesion.train into $RUNS/NAME, stopped at the deadline
  local name=$1; shift
  timeout "$(seconds_left)" $PY -m training.lesion --store-path "$STORES/bus_bra" --output-dir "$RUNS/$name" \
    --num-epochs "$EPOCHS" "${LESION_ARGS[@]}" "$@" > "$RUNS/$name.log" 2>&1
  log "$name finished (rc $?)"
}

install_wheels || { log "installing the wheels failed"; exit 1; }
record_environment
log "set up: $(grep -m1 -o 'NVIDIA [A-Z0-9]*' "$RUNS/environment.txt" || echo no GPU); lesion model, $EPOCHS epochs"
# the 5 folds and the final model side by side (the final model for EPOCHS epochs, fixed in advance); the final
# model then takes the folds' validation choices (presence score, threshold): training.lesion.choices
lesion_run lesion --no-final-model "${CV_ARGS[@]}" &
CV=$!
lesion_run lesion_final --final-only --final-epochs "$EPOCHS" "${FINAL_ARGS[@]}" &
FINAL=$!
wait "$CV" "$FINAL"
log "folds: $(grep -o 'fold [0-9]: Dice [^ ]*' "$RUNS/lesion.log" | tr '\n' ' ')"
$PY -m training.lesion.choices --cv-run "$RUNS/lesion" --final-run "$RUNS/lesion_final" >> "$RUNS/lesion_final.log" 2>&1
log "lesion_choices (rc $?)"
if [ -f "$RUNS/lesion_final/final_model/model.safetensors" ]; then
  $PY -c "import sys, torch; from safetensors.torch import load_file, save_file
weights = load_file(sys.argv[1]); save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
sys.argv[2], metadata={'format': 'pt'})" "$RUNS/lesion_final/final_model/model.safetensors" "$OUT/lesion_model.safetensors"
  log "final model: $(du -h "$OUT/lesion_model.safetensors" | cut -f1) of float16 weights"
else
  log "no final model was written"
fi
tar czf "$OUT/lesion_runs.tar.gz" -C "$(dirname "$RUNS")" --exclude='*.safetensors' "$(basename "$RUNS")"
log "all done: packed $(du -h "$OUT/lesion_runs.tar.gz" | cut -f1) into $OUT/lesion_runs.tar.gz"
