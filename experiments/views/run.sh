#!/usr/bin/env bash
# Lesion crops on the 2-core CPU (issue #15: the BUS-BRA paper's 0.931 is an ImageNet ResNet-18 on lesion crops).
# 1. The shipped segmenter's recipe (models/usvcl-lesion-busbra: ImageNet Lite0 U-Net, 128 px, 4 epochs) trained per
#    official fold without that fold's test patients, seed 42: each fold's boxes.csv holds its predicted lesion box
#    of the fold's inner-validation and test images. The segmenter draws its inner splits as the classifier below
#    does (same function, seed 42, 0.2), so it never trained on an image that the classifier validates or tests on
#    (training.finetune checks this).
# 2. The default recipe (ImageNet Lite0, the default recipe, 15 epochs, seed 42) on lesion crops: the box grown by MARGIN of
#    its size on each side, at SIZE px (128: about the crops' stored size, median longer side 139 px at MARGIN 0.2).
#    Training images are cut by their masks' boxes, inner-validation and test images by their fold's segmenter
#    boxes, as a deployed model would see them. MARGIN and SIZE are fixed in advance, not tuned.
# Then whole image (the shipped arm, 192 px) or lesion crops by mean inner-validation AUC over the 5 folds
# (experiments/choose_by_validation.py): $RUNS/crop_choice.json; no test fold is looked at.
# Two 1-thread processes a stage (folds 1-3, folds 4-5); no final models.
#   bash experiments/views/run.sh        # RUNS=runs/cpu, MARGIN=0.2, SIZE=128 (defaults)
set -euo pipefail
RUNS=${RUNS:-runs/cpu}
MARGIN=${MARGIN:-0.2}
SIZE=${SIZE:-128}
CHOICES=(experiments/configs/whole_image_15_epochs_choices.yaml experiments/configs/crop_view_choices.yaml)
source experiments/common.sh
ARM=lite0_B_crops
PARTS=("1 2 3" "4 5")
mkdir -p "$RUNS"

segmenter_lane() {  # segmenter_lane "FOLDS": the shipped segmenter's recipe on those folds (skipped when done)
  local name=lesion_boxes_folds${1// /-}
  [ -f "$RUNS/$name/boxes.csv" ] || OMP_NUM_THREADS=1 python -m training.lesion --store-path "$STORES/bus_bra" \
    --init imagenet --image-size 128 --num-epochs 4 --batch-size 32 --eval-batch-size 64 --learning-rate 1e-3 \
    --mixed-precision bf16 --num-workers 0 --seed 42 --no-final-model --folds $1 --output-dir "$RUNS/$name" \
    > "$RUNS/$name.log" 2>&1
}

for part in "${PARTS[@]}"; do segmenter_lane "$part" & done
wait
BOXES=("$RUNS"/lesion_boxes_folds1-2-3/boxes.csv "$RUNS"/lesion_boxes_folds4-5/boxes.csv)
for part in "${PARTS[@]}"; do
  finetune_run "${ARM}_folds${part// /-}" --seed 42 --num-epochs 15 --image-size "$SIZE" --lesion-crop \
    --crop-margin "$MARGIN" --eval-boxes "${BOXES[@]}" --folds $part --no-final-model &
done
wait
pool_arm "$ARM" "$RUNS/${ARM}_folds1-2-3" "$RUNS/${ARM}_folds4-5"
chosen=$(python experiments/choose_by_validation.py "$SHIPPED" "$RUNS/$ARM/arm_results.json" \
  --output "$RUNS/crop_choice.json" --choice "whole image (192 px) or lesion crops ($SIZE px)" | tail -n 1)
echo "segmenters in $RUNS/lesion_boxes_folds*; arm in $RUNS/$ARM; chosen on inner validation: $chosen"
