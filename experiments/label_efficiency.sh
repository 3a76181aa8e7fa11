#!/usr/bin/env bash
# Experiment 2 (issue #7): test AUC against the number of labeled training images (25, 50, 100, 200, 400, all) for
# random init and the best pretrained model, several patient-grouped draws per size, same test fold(s).
# Every fine-tuning runs MAX_STEPS optimizer steps whatever the size (default 200), so small sizes are not
# under-trained; every draw's test predictions are kept (label_efficiency_predictions.csv) and the CI is over draws
# and patients. The GPU version: experiments/gpu/label_efficiency.sh.
# Usage: [PRETRAINED_NAME=legend] [FIGURE=png] [FINETUNE_CONFIG=yaml] [MAX_STEPS=n] \
#            bash experiments/label_efficiency.sh PRETRAINED_MODEL_DIR [FOLDS] [DRAWS]
# (defaults: folds 1 and 2, 5 draws, docs/figures/label_efficiency.png, experiments/configs/finetune_cpu.yaml)
source "$(dirname "$0")/common.sh"
PRETRAINED=${1:?usage: label_efficiency.sh PRETRAINED_MODEL_DIR [FOLDS] [DRAWS]}
FOLDS=${2:-"1 2"}
DRAWS=${3:-5}
STEPS=${MAX_STEPS:-200}
SIZES="25 50 100 200 400"
finetune le_random --init random --folds $FOLDS --num-labels $SIZES --label-draws "$DRAWS" --max-steps "$STEPS" \
  --no-final-model --no-save-fold-models
finetune le_pretrained --init pretrained --pretrained-path "$PRETRAINED" --folds $FOLDS --num-labels $SIZES \
  --label-draws "$DRAWS" --max-steps "$STEPS" --no-final-model --no-save-fold-models
python experiments/plot_label_efficiency.py --output "${FIGURE:-docs/figures/label_efficiency.png}" \
  --run "random init=$RUNS/le_random" --run "${PRETRAINED_NAME:-pretrained ($PRETRAINED)}=$RUNS/le_pretrained"
