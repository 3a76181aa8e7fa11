#!/usr/bin/env bash
# The default model on the 2-core CPU (issue #15): ImageNet EfficientNet-Lite0 (offline weights,
# training/imagenet_init.py) fine-tuned on BUS-BRA's official 5 folds at 192 px, bf16 autocast + channels_last, 10
# epochs. The input size is a compute choice, not a validated one: a training step of 32 images took 0.97 s at 192 px
# and 1.29 s at 224 px here (2 threads, measured back to back), and the whole plan had to fit one session.
#   1. Two recipes on fold 1, side by side (one torch thread each): A = AdamW 5e-4, B = 1e-3 with the backbone at
#      0.3x, EMA 0.99 and flip TTA. Chosen by fold 1's inner-validation AUC (experiments/choose_by_validation.py,
#      recorded as the "recipe" choice in the winner's results.json); the test fold is not looked at.
#   2. The winner on folds 2-5 plus the final model (every image; median best epoch and threshold of folds 2-5,
#      temperature on a patient-grouped holdout), two torch threads.
#   3. The winner's fold-1 run and step 2 pooled into one arm (experiments/pool_predictions.py --results-json).
# Wall time on the development machine (2 cores): about 15 min (step 1); step 2 ran as one 1-thread process beside
# the lesion segmenter's training. Results under $RUNS; commit
# them under experiments/recipe/results/default_recipe_and_lesion_segmenter.md (docs/results.md says which folder is which).
set -euo pipefail
RUNS=${RUNS:-runs/cpu}
CONFIG=experiments/configs/finetune_gpu_lite0.yaml
COMMON=(--config "$CONFIG" --store-path "${STORE:-stores/bus_bra}" --image-size 192 --num-epochs 10)
declare -A RECIPES=(
  [A_lr5e-4]="--learning-rate 5e-4"
  [B_lr1e-3_ema_tta]="--learning-rate 1e-3 --backbone-lr-scale 0.3 --ema-decay 0.99 --tta-flip"
)
mkdir -p "$RUNS"
for name in "${!RECIPES[@]}"; do
  OMP_NUM_THREADS=1 python -m training.finetune "${COMMON[@]}" --folds 1 --no-final-model ${RECIPES[$name]} \
    --output-dir "$RUNS/pilot_$name" > "$RUNS/pilot_$name.log" 2>&1 &
done
wait
chosen=$(python experiments/choose_by_validation.py "$RUNS"/pilot_*/results.json --output "$RUNS/recipe_choice.json" \
  --choice recipe | tail -n 1)
name=$(basename "$chosen"); name=${name#pilot_}
echo "recipe chosen on fold 1's inner validation: $name"
OMP_NUM_THREADS=2 python -m training.finetune "${COMMON[@]}" --folds 2 3 4 5 ${RECIPES[$name]} \
  --output-dir "$RUNS/lite0_${name}_folds2-5" > "$RUNS/lite0_${name}_folds2-5.log" 2>&1
python experiments/pool_predictions.py "$RUNS/pilot_$name" "$RUNS/lite0_${name}_folds2-5" \
  --output "$RUNS/lite0_pooled.json" --results-json "$RUNS/lite0_results.json" \
  --choices experiments/configs/default_recipe_choices.yaml
echo "arm results in $RUNS/lite0_results.json; final model in $RUNS/lite0_${name}_folds2-5/final_model"
