#!/usr/bin/env bash
# Issue #9.3: Grad-CAM pointing game and saliency energy inside BUS-BRA's lesion masks, each fold model on its own
# test fold, for every fine-tuning run given (default: random init, hard triplet, InfoNCE on lung clips).
# Usage: bash experiments/saliency.sh [RUN_NAME ...]
source "$(dirname "$0")/common.sh"
RUN_NAMES=${*:-"ft_random ft_lung_hard_triplet ft_lung_info_nce"}
for name in $RUN_NAMES; do
  [ -f "$RUNS/$name/saliency/saliency.json" ] || python -m training.finetune.saliency_eval --run-dir "$RUNS/$name" \
    --store "$STORES/bus_bra" --masks "$DATA/bus_bra/Masks" --output "$RUNS/$name/saliency" \
    --grid "docs/figures/saliency_grid_${name}.png"
done
