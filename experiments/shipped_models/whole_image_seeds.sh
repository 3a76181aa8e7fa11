#!/usr/bin/env bash
# More training seeds of the shipped recipe on the 2-core CPU (issue #17 item 3, issue #15 item 3): ImageNet
# EfficientNet-Lite0, the default recipe, 15 epochs, 192 px, as experiments/shipped_models/results/whole_image_15_epochs/seed42 (seed 42). Gives the
# default model's seed spread, and a seed ensemble that can be chosen (or distilled) on validation: every seed draws
# its inner validation splits with --split-seed 42, the shipped arm's, so all seeds are scored on the same inner
# validation images (val_predictions.csv) and their mean can be compared with one seed there. Seed 42 itself has to
# run again for its val_predictions.csv (its runs predate the file; training here repeats to the last digit,
# experiments/label_efficiency/results/labels_50.md, so its test predictions must equal the shipped arm's).
# VIEW=crop runs seeds of the other shipped view instead, the lesion-crop classifier (experiments/views/run.sh's
# recipe: 128 px, margin 0.2), its validation and test images cut by the committed per-fold segmenter boxes (same
# inner splits, seed 42); about 12 min a fold on a process.
# One process per seed, one torch thread each; FOLDS splits the 5 folds over sessions (about 22 min a fold on a process),
# each part into its own folder (committed as fold folders, folds1-2/ and folds3-5/, that experiments.report reads as one run). No final model.
# EPOCHS (15 by default, the shipped schedule) runs a longer or shorter schedule as a candidate (issue #15 item 3:
# for the whole image 15 epochs beat 10 on inner validation, 0.888 against 0.876, and a crop epoch costs under half
# a whole-image one); crop folders then get _<EPOCHS>ep.
#   SEEDS="43 44" FOLDS="1 2" bash experiments/shipped_models/whole_image_seeds.sh   # -> $RUNS/lite0_B_15ep_seed43_folds1-2, ...
#   VIEW=crop SEEDS=43 FOLDS="4 5" bash experiments/shipped_models/whole_image_seeds.sh   # -> $RUNS/lite0_B_crops_seed43_folds4-5
#   VIEW=crop EPOCHS=25 SEEDS=42 FOLDS="4 5" bash experiments/shipped_models/whole_image_seeds.sh  # -> ..._crops_25ep_seed42_folds4-5
set -euo pipefail
RUNS=${RUNS:-runs/cpu}
SEEDS=(${SEEDS:-43 44})
FOLDS=(${FOLDS:-1 2 3 4 5})
VIEW=${VIEW:-whole}
EPOCHS=${EPOCHS:-15}
BOXES=(experiments/shipped_models/results/lesion_boxes/folds1-3/boxes.csv experiments/shipped_models/results/lesion_boxes/folds4-5/boxes.csv)
source experiments/common.sh
case $VIEW in
  whole) NAME=lite0_B_${EPOCHS}ep; VIEW_ARGS=() ;;
  crop) NAME=lite0_B_crops; VIEW_ARGS=(--image-size 128 --lesion-crop --crop-margin 0.2 --eval-boxes "${BOXES[@]}") ;;
  *) echo "VIEW must be whole or crop, got $VIEW" >&2; exit 2 ;;
esac
[ "$VIEW" = whole ] || [ "$EPOCHS" = 15 ] || NAME=${NAME}_${EPOCHS}ep
mkdir -p "$RUNS"
part=folds$(IFS=-; echo "${FOLDS[*]}")

for seed in "${SEEDS[@]}"; do
  finetune_run "${NAME}_seed${seed}_$part" --num-epochs "$EPOCHS" --seed "$seed" --split-seed 42 \
    "${VIEW_ARGS[@]}" --folds "${FOLDS[@]}" --no-final-model &
done
wait
echo "seeds ${SEEDS[*]}, folds ${FOLDS[*]}: $RUNS/${NAME}_seed*_$part"
