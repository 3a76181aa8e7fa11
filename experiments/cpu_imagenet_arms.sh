#!/usr/bin/env bash
# Lung-clip contrastive pretraining from ImageNet, on the 2-core CPU (issue #15, item 2): does it add anything to the
# default recipe? Two lanes side by side, one torch thread each (as experiments/cpu_seeds.sh):
#   lane hard_triplet: ImageNet EfficientNet-Lite0 -> the paper's hard triplet loss on the lung clips
#                      (COVID-BLUES + POCUS) -> the default recipe on BUS-BRA's 5 official folds;
#   lane info_nce:     the same with InfoNCE.
# Pretraining: experiments/configs/pretrain_gpu_lite0.yaml (lr 1e-4 so that ImageNet features are adapted, not
# overwritten) cut to the CPU: 4 anchors x (1 + 7 positives) + 64 shared negatives per step (96 views, about 6.5 s
# a step here), PRE_STEPS steps (about 20 min), no label probe (selection: last step by the training loss). Nothing
# of BUS-BRA is seen before fine-tuning. Fine-tuning: the default recipe exactly as chosen for ImageNet init
# (experiments/results/cpu6_lite0, fold 1's inner validation), training seed 42 as the shipped model's runs, so
# each arm pairs image by image with them; not re-tuned per arm (no time: a limitation the results say).
# SEEDS: one lane per loss and seed; the seed drives both the pretraining (model, clip sampler, augmentations,
# held-out patients) and the fine-tuning. Seed 42's folders keep session 8's names; other seeds add _seed<N>.
#   bash experiments/cpu_imagenet_arms.sh                          # RUNS=runs/cpu (default); about 105 min
#   LOSSES=info_nce SEEDS="43 44" bash experiments/cpu_imagenet_arms.sh   # two more seeds of one arm, about 100 min
set -euo pipefail
RUNS=${RUNS:-runs/cpu}
PRE_STEPS=${PRE_STEPS:-180}
LOSSES=(${LOSSES:-hard_triplet info_nce})
SEEDS=(${SEEDS:-42})
source experiments/common.sh
PRETRAIN=("${CPU_PRETRAIN[@]}" --store-paths "$STORES/covid_blues" "$STORES/pocus" --max-steps "$PRE_STEPS")
FINETUNE_ARGS=(--no-final-model --num-epochs 10 --folds 1 2 3 4 5)
mkdir -p "$RUNS"
prepare_stores

lane() {  # lane LOSS SEED: pretrain with LOSS, then fine-tune from its encoder; logs beside the run folders
  local loss=$1 seed=$2 suffix=""
  [ "$seed" = 42 ] || suffix=_seed$seed
  local pre=$RUNS/pretrain_lung_$loss$suffix name=lite0_B_lung_$loss$suffix
  OMP_NUM_THREADS=1 python -m training.pretrain "${PRETRAIN[@]}" --loss "$loss" --seed "$seed" --output-dir "$pre" \
    > "$pre.log" 2>&1
  finetune_lane "$name" "${FINETUNE_ARGS[@]}" --seed "$seed" --init pretrained --pretrained-path "$pre/model"
  echo "lane $loss seed $seed: encoder in $pre/model, fine-tuning in $RUNS/$name"
}

for loss in "${LOSSES[@]}"; do
  for seed in "${SEEDS[@]}"; do lane "$loss" "$seed" & done
done
wait
