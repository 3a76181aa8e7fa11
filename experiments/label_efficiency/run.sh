#!/usr/bin/env bash
# Seeds and label efficiency of the default recipe on the 2-core CPU (issue #17, items 3 and 5), after
# experiments/recipe/run.sh chose it: ImageNet EfficientNet-Lite0, 192 px, the default recipe (lr 1e-3, backbone at 0.3x, EMA
# 0.99, flip TTA), 10 epochs. Two 1-thread processes side by side (1.65x the throughput of one 2-thread process here).
#   seeds:            training seeds 43 and 44 (the default model's runs used 42) on all 5 official folds, no final
#                     model: a process each, about 75 min.
#   label_efficiency: 100 labeled training images (patient-drawn) x 5 draws on test folds 1 and 2, a process per
#                     fold, every fine-tuning counted in optimizer steps (MAX_STEPS whatever the size; validated 4
#                     times on the fold's inner validation split, the best point kept), plus the fold's whole
#                     training side under the same schedule: about 42 min. A first try at 80 steps with 50 and 100
#                     labels was stopped after its whole-training-side runs: inner-validation AUC 0.713 (fold 1) and
#                     0.728 (fold 2), best at the last validation, against 0.899 and 0.830 with 10 epochs (380
#                     steps): under-trained. 200 steps and one size is what the time left allowed.
# The draws do not depend on which folds a process runs (seeded by size and draw), so the two processes together are
# the draws a single `--folds 1 2` run would make; experiments.report reads both folders as one arm.
#   bash experiments/label_efficiency/run.sh [seeds] [label_efficiency]      # RUNS=runs/cpu (default), both steps by default
set -euo pipefail
RUNS=${RUNS:-runs/cpu}
MAX_STEPS=${MAX_STEPS:-200}
SIZES=${SIZES:-100}
source experiments/common.sh
STEPS=${*:-seeds label_efficiency}
mkdir -p "$RUNS"

if [[ " $STEPS " == *" seeds "* ]]; then
  for seed in 43 44; do
    finetune_run "lite0_B_seed$seed" --no-final-model --num-epochs 10 --seed "$seed" --folds 1 2 3 4 5 &
  done
  wait
  echo "seeds in $RUNS/lite0_B_seed43 and $RUNS/lite0_B_seed44"
fi
if [[ " $STEPS " == *" label_efficiency "* ]]; then
  for fold in 1 2; do
    # shellcheck disable=SC2086  # SIZES is a list
    finetune_run "le_imagenet_fold$fold" --no-final-model --num-epochs 4 --max-steps "$MAX_STEPS" --folds "$fold" \
      --num-labels $SIZES --label-draws 5 &
  done
  wait
  echo "label efficiency in $RUNS/le_imagenet_fold1 and $RUNS/le_imagenet_fold2"
fi
