#!/usr/bin/env bash
# The lesion-crop classifier's final model (issue #15), for the whole-image + lesion-crop pair chosen on inner
# validation (experiments/views/results/two_views.md): the crop arm's recipe (experiments/views/run.sh:
# ImageNet Lite0, the default recipe, 128 px, margin 0.2, seed 42) trained on all BUS-BRA images but a patient-grouped holdout
# that fits its temperature and bias, training images cut by their masks' boxes, for the median best epoch and
# threshold of the arm's committed folds (--final-from: every fold*/results.json of ARM_DIR; no cross-validation
# again).
# EPOCHS (15 by default) is the arm's schedule: 25 for the shipped crop model (experiments/shipped_models/results/
# crop_25_epochs). One 1-thread process.
#   bash experiments/shipped_models/crop_final_model.sh    # -> $RUNS/lite0_B_crops_final/final_model (RUNS=runs/cpu)
#   EPOCHS=25 ARM_DIR=experiments/shipped_models/results/crop_25_epochs/seed42 \
#     bash experiments/shipped_models/crop_final_model.sh  # -> $RUNS/lite0_B_crops_25ep_final/final_model
set -euo pipefail
RUNS=${RUNS:-runs/cpu}
EPOCHS=${EPOCHS:-15}
ARM_DIR=${ARM_DIR:-experiments/views/results/crop_15_epochs/seed42}
NAME=lite0_B_crops_final
[ "$EPOCHS" = 15 ] || NAME=lite0_B_crops_${EPOCHS}ep_final
source experiments/common.sh
mkdir -p "$RUNS"
finetune_run "$NAME" --seed 42 --num-epochs "$EPOCHS" --image-size 128 --lesion-crop --crop-margin 0.2 \
  --final-from "$ARM_DIR"/fold*/results.json
echo "final crop model: $RUNS/$NAME/final_model (log $RUNS/$NAME.log)"
