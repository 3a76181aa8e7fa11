#!/usr/bin/env bash
# After experiments/schedule/run.sh (issue #15 item 3): choose the schedule, run the lesion-mask-loss arm at it, choose
# the arm to ship. Everything chosen by mean inner-validation AUC over the 5 folds (experiments/choose_by_validation.py);
# no test fold is looked at.
#   1. Pool the 15-epoch processes into one arm (experiments/pool_predictions.py); choose 10 epochs (the shipped model's
#      seed-42 arm, experiments/pretraining_imagenet_vs_ultrasound/results/imagenet/seed42) or 15: $RUNS/schedule_choice.json.
#   2. The default recipe at the chosen schedule plus the auxiliary lesion-mask loss (--mask-loss-weight 0.5, fixed in
#      advance), seed 42, two 1-thread processes as in experiments/schedule/run.sh (folds 1-3; folds 4-5 and the final model).
#   3. Choose among the schedule's winner and the mask-loss arm: $RUNS/default_choice.json (recorded in the chosen
#      arm's arm_results.json, from where training.export renders the card).
#   bash experiments/lesion_mask_loss/run.sh            # RUNS=runs/cpu (default)
set -euo pipefail
RUNS=${RUNS:-runs/cpu}
TEN_EPOCHS=${TEN_EPOCHS:-experiments/pretraining_imagenet_vs_ultrasound/results/imagenet/seed42/arm_results.json}
CHOICES=(experiments/configs/whole_image_15_epochs_choices.yaml)
source experiments/common.sh

epochs_of() {  # epochs_of RESULTS_JSON: the run's num_epochs
  python -c "import json, sys; print(json.load(open(sys.argv[1]))['config']['num_epochs'])" "$1"
}

pool_arm lite0_B_15ep "$RUNS/lite0_B_15ep_folds1-3" "$RUNS/lite0_B_15ep_folds4-5"
schedule=$(python experiments/choose_by_validation.py "$TEN_EPOCHS" "$RUNS/lite0_B_15ep/arm_results.json" \
  --output "$RUNS/schedule_choice.json" --choice "schedule (10 or 15 epochs)" | tail -n 1)
schedule_results=$TEN_EPOCHS
[ "$schedule" = "$RUNS/lite0_B_15ep" ] && schedule_results=$RUNS/lite0_B_15ep/arm_results.json
epochs=$(epochs_of "$schedule_results")
echo "schedule chosen on inner validation: $epochs epochs ($schedule)"

MASK_ARM=(--seed 42 --num-epochs "$epochs" --mask-loss-weight 0.5)
finetune_run "lite0_B_mask_folds1-3" "${MASK_ARM[@]}" --folds 1 2 3 --no-final-model &
finetune_run "lite0_B_mask_folds4-5" "${MASK_ARM[@]}" --folds 4 5 &
wait
pool_arm lite0_B_mask "$RUNS/lite0_B_mask_folds1-3" "$RUNS/lite0_B_mask_folds4-5"
chosen=$(python experiments/choose_by_validation.py "$schedule_results" "$RUNS/lite0_B_mask/arm_results.json" \
  --output "$RUNS/default_choice.json" --choice "lesion-mask loss (the arm shipped)" | tail -n 1)
echo "arm chosen on inner validation: $chosen (its comparison: $RUNS/default_choice.json)"
