#!/usr/bin/env bash
# Issue #9.3, the cheapest fix: mask burnt-in overlays (text, calipers) in BUS-BRA, fine-tune the default recipe
# (InfoNCE-pretrained on lung clips, experiments/configs/finetune_cpu.yaml) on the masked images with the same folds,
# and rerun the saliency study on the masked test images. Before = ft_lung_info_nce (experiments/main_table.sh and
# experiments/saliency.sh). Usage: bash experiments/overlay_fix.sh
source "$(dirname "$0")/common.sh"
prepare_stores
[ -d "$STORES/bus_bra_masked" ] || python -m training.prepare_data.overlay_mask --store "$STORES/bus_bra" \
  --output "$STORES/bus_bra_masked" --examples docs/figures/overlay_mask_examples.png
pretrain pretrain_lung_info_nce experiments/configs/pretrain_cpu_lung_info_nce.yaml
finetune ft_lung_info_nce_masked --init pretrained --pretrained-path "$RUNS/pretrain_lung_info_nce/model" \
  --store-path "$STORES/bus_bra_masked" --no-final-model
[ -f "$RUNS/ft_lung_info_nce_masked/saliency/saliency.json" ] || python -m training.finetune.saliency_eval \
  --run-dir "$RUNS/ft_lung_info_nce_masked" --store "$STORES/bus_bra_masked" --masks "$DATA/bus_bra/Masks" \
  --output "$RUNS/ft_lung_info_nce_masked/saliency" --grid docs/figures/saliency_grid_ft_lung_info_nce_masked.png
python experiments/collect_results.py --output experiments/results/overlay_fix.md \
  --run "InfoNCE (lung clips), original images=$RUNS/ft_lung_info_nce" \
  --run "InfoNCE (lung clips), overlays masked=$RUNS/ft_lung_info_nce_masked"
