#!/usr/bin/env bash
# The lesion-crop classifier's final model (issue #15), for the whole-image + lesion-crop pair chosen on inner
# validation (experiments/results/cpu16_two_view/README.md): the crop arm's recipe (experiments/cpu_lesion_crops.sh:
# ImageNet Lite0, recipe B, 15 epochs, 128 px, margin 0.2, seed 42) trained on all BUS-BRA images but a
# patient-grouped holdout that fits its temperature, training images cut by their masks' boxes, for the median best
# epoch and threshold of the arm's committed folds (--final-from: no cross-validation again). One 1-thread lane.
#   bash experiments/cpu_final_crop_model.sh    # -> $RUNS/lite0_B_crops_final/final_model (RUNS=runs/cpu)
set -euo pipefail
RUNS=${RUNS:-runs/cpu}
ARM_DIR=experiments/results/cpu15_crops/lite0_B_crops
source experiments/common.sh
mkdir -p "$RUNS"
finetune_lane lite0_B_crops_final --seed 42 --num-epochs 15 --image-size 128 --lesion-crop --crop-margin 0.2 \
  --final-from "$ARM_DIR"/part1/results.json "$ARM_DIR"/part2/results.json
echo "final crop model: $RUNS/lite0_B_crops_final/final_model (log $RUNS/lite0_B_crops_final.log)"
