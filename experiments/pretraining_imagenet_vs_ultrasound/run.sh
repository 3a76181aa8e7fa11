#!/usr/bin/env bash
# Lung-clip contrastive pretraining from ImageNet, on the 2-core CPU (issue #15, item 2): does it add anything to the
# default recipe? Two processes side by side, one torch thread each (as experiments/label_efficiency/run.sh):
#   process hard_triplet: ImageNet EfficientNet-Lite0 -> the paper's hard triplet loss on the lung clips
#                      (COVID-BLUES + POCUS) -> the default recipe on BUS-BRA's 5 official folds;
#   process info_nce:     the same with InfoNCE.
# Pretraining: experiments/configs/pretrain_gpu_lite0.yaml (lr 1e-4 so that ImageNet features are adapted, not
# overwritten) cut to the CPU: 4 anchors x (1 + 7 positives) + 64 shared negatives per step (96 views, about 6.5 s
# a step here), PRE_STEPS steps (about 20 min), no label probe (selection: last step by the training loss). Nothing
# of BUS-BRA is seen before fine-tuning. Fine-tuning: the default recipe exactly as chosen for ImageNet init
# (experiments/recipe/results/default_recipe_and_lesion_segmenter.md, fold 1's inner validation), training seed 42 as the shipped model's runs, so
# each arm pairs image by image with them; not re-tuned per arm (no time: a limitation the results say).
# SEEDS: one process per loss and seed; the seed drives both the pretraining (model, clip sampler, augmentations,
# held-out patients) and the fine-tuning. Seed 42's folders keep the earlier names; other seeds add _seed<N>.
#   bash experiments/pretraining_imagenet_vs_ultrasound/run.sh                          # RUNS=runs/cpu (default); about 105 min
#   LOSSES=info_nce SEEDS="43 44" bash experiments/pretraining_imagenet_vs_ultrasound/run.sh   # two more seeds of one arm, about 100 min
set -euo pipefail
RUNS=${RUNS:-runs/cpu}
PRE_STEPS=${PRE_STEPS:-180}
LOSSES=(${LOSSES:-hard_triplet info_nce})
SEEDS=(${SEEDS:-42})
source experiments/common.sh
PRETRAIN=(--store-paths "$STORES/covid_blues" "$STORES/pocus" --max-steps "$PRE_STEPS")
FINETUNE_ARGS=(--no-final-model --num-epochs 10 --folds 1 2 3 4 5)
mkdir -p "$RUNS"
prepare_stores

pretrain_then_finetune() {  # pretrain_then_finetune LOSS SEED: pretrain with LOSS, then fine-tune from its encoder; logs beside the run folders
  local loss=$1 seed=$2 suffix=""
  [ "$seed" = 42 ] || suffix=_seed$seed
  local pre=$RUNS/pretrain_lung_$loss$suffix name=lite0_B_lung_$loss$suffix
  pretrain_encoder "$pre" "${PRETRAIN[@]}" --loss "$loss" --seed "$seed"
  finetune_from_encoder "$name" "$pre" "${FINETUNE_ARGS[@]}" --seed "$seed"
  echo "process $loss seed $seed: encoder in $pre/model, fine-tuning in $RUNS/$name"
}

for loss in "${LOSSES[@]}"; do
  for seed in "${SEEDS[@]}"; do pretrain_then_finetune "$loss" "$seed" & done
done
wait
