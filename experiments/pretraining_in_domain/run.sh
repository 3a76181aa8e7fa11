#!/usr/bin/env bash
# In-domain contrastive pretraining from ImageNet on the 2-core CPU (issue #15, item 2, the arm the paper's idea
# implies when no breast clips exist): ImageNet EfficientNet-Lite0 -> the paper's hard triplet loss on BUS-BRA images
# grouped by patient (a patient's images are its "clip": positives from them, negatives from other patients; no
# label) -> the default recipe at the chosen schedule (15 epochs, seed 42) on the 5 official folds. Pretrained once
# per fold without that fold's test patients (--exclude-test-of split_K) and once on every image for the final model
# ("{fold}" in the pretrained path). The pretraining sees the unlabelled images of each fold's inner-validation
# patients, never their labels. Hard triplet, not InfoNCE: on the lung clips the two were tied and hard triplet had
# the higher mean inner-validation AUC (0.879 against 0.877, experiments/pretraining_imagenet_vs_ultrasound/results/lung_pretraining.md). Pretraining as the lung
# arms (experiments/pretraining_imagenet_vs_ultrasound/run.sh: 4 anchors x (1 + 7 positives) + 64 shared negatives, lr 1e-4, selection by
# the training loss, no label probe) for PRE_STEPS steps. Then the arm against the shipped 15-epoch arm by mean
# inner-validation AUC over the 5 folds (experiments/choose_by_validation.py): $RUNS/busbra_choice.json.
# Two 1-thread processes: pretrain folds 1-3 then fine-tune them; pretrain folds 4-5 and all, then fine-tune folds 4-5
# and the final model. About 100 min.
# SEED (other than 42) runs one more training seed of the arm (issue #17 item 3): the seed drives each fold's
# pretraining and its fine-tuning, the inner validation splits stay seed 42's (--split-seed 42, as
# experiments/shipped_models/whole_image_seeds.sh), no final model and no choice. Folders get _seed<N>; the fine-tuning comes in
# three parts so that the processes balance (pretrain 1-3, fine-tune 1-2 | pretrain 4-5, fine-tune 4-5, then 3). About 90 min.
#   bash experiments/pretraining_in_domain/run.sh        # RUNS=runs/cpu (default)
#   SEED=43 bash experiments/pretraining_in_domain/run.sh
set -euo pipefail
RUNS=${RUNS:-runs/cpu}
PRE_STEPS=${PRE_STEPS:-90}
EPOCHS=${EPOCHS:-15}
SEED=${SEED:-42}
CHOICES=(experiments/configs/whole_image_15_epochs_choices.yaml experiments/configs/in_domain_pretraining_choices.yaml)
source experiments/common.sh
PRETRAIN=(--store-paths "$STORES/bus_bra" --loss hard_triplet --max-steps "$PRE_STEPS")
mkdir -p "$RUNS"

SUFFIX=""
[ "$SEED" = 42 ] || SUFFIX=_seed$SEED
ENCODERS=$RUNS/pretrain_busbra$SUFFIX

pretrain_fold() {  # pretrain_fold K|all: the encoder of fold K (its test patients excluded) or of every image
  local fold=$1 exclude=(--exclude-test-of "split_$1")
  [ "$fold" = all ] && exclude=()
  pretrain_encoder "${ENCODERS}_$fold" "${PRETRAIN[@]}" "${exclude[@]}" --seed "$SEED"
}

finetune_folds() {  # finetune_folds NAME FINETUNE_ARGS...: fine-tuning from each fold's encoder
  local name=$1; shift
  finetune_from_encoder "$name" "${ENCODERS}_{fold}" --num-epochs "$EPOCHS" --seed "$SEED" "$@"
}

pretrain_then_finetune() {  # pretrain_then_finetune NAME PRETRAIN_FOLDS -- FINETUNE_ARGS...: the process's pretrainings, then its fine-tuning
  local name=$1; shift
  while [ "$1" != -- ]; do pretrain_fold "$1"; shift; done
  shift
  finetune_folds "$name" "$@"
}

if [ "$SEED" != 42 ]; then
  arm=lite0_B_busbra$SUFFIX seeds=(--split-seed 42 --no-final-model)
  pretrain_then_finetune "${arm}_folds1-2" 1 2 3 -- --folds 1 2 "${seeds[@]}" &
  { pretrain_then_finetune "${arm}_folds4-5" 4 5 -- --folds 4 5 "${seeds[@]}"; finetune_folds "${arm}_folds3" --folds 3 "${seeds[@]}"; } &
  wait
  pool_arm "$arm" "$RUNS/${arm}_folds1-2" "$RUNS/${arm}_folds3" "$RUNS/${arm}_folds4-5"
  echo "seed $SEED: encoders in ${ENCODERS}_*; arm in $RUNS/$arm"
  exit 0
fi

pretrain_then_finetune lite0_B_busbra_folds1-3 1 2 3 -- --folds 1 2 3 --no-final-model &
pretrain_then_finetune lite0_B_busbra_folds4-5 4 5 all -- --folds 4 5 &
wait
pool_arm lite0_B_busbra "$RUNS/lite0_B_busbra_folds1-3" "$RUNS/lite0_B_busbra_folds4-5"
chosen=$(python experiments/choose_by_validation.py "$SHIPPED" "$RUNS/lite0_B_busbra/arm_results.json" \
  --output "$RUNS/busbra_choice.json" --choice "in-domain pretraining (the arm shipped)" | tail -n 1)
echo "encoders in $RUNS/pretrain_busbra_*; arm in $RUNS/lite0_B_busbra; chosen on inner validation: $chosen"
