#!/usr/bin/env bash
# Experiment 1 (issue #7): random init vs contrastive pretraining (InfoNCE, hard triplet in both positive_reduction
# modes) on BUS-BRA's official patient-grouped 5 folds; pretraining data: lung clips, BUS-BRA images grouped by
# patient, both. CPU scale (resnet10t, 112 px). Usage: bash experiments/main_table.sh [FOLDS] (default "1 2 3 4 5";
# the arms whose pretraining uses BUS-BRA images always run on fold 1 only: their pretraining excludes fold 1's test
# images, and a pretraining per fold is out of CPU budget).
# ImageNet init needs the network: `--init imagenet` is supported by training.finetune, not run here.
source "$(dirname "$0")/common.sh"
FOLDS=${1:-"1 2 3 4 5"}
EXP=experiments/configs
prepare_stores

pretrain pretrain_lung_hard_triplet $EXP/pretrain_cpu_lung_hard_triplet.yaml
pretrain pretrain_lung_info_nce $EXP/pretrain_cpu_lung_info_nce.yaml
pretrain pretrain_lung_hard_triplet_mean_distance $EXP/pretrain_cpu_lung_hard_triplet_mean_distance.yaml
pretrain pretrain_busbra_hard_triplet $EXP/pretrain_cpu_lung_hard_triplet.yaml \
  --store-paths "$STORES/bus_bra" --exclude-test-of split_1
pretrain pretrain_both_hard_triplet $EXP/pretrain_cpu_lung_hard_triplet.yaml \
  --store-paths "$STORES/covid_blues" "$STORES/pocus" "$STORES/bus_bra" --exclude-test-of split_1

finetune ft_random --init random --folds $FOLDS
finetune ft_lung_hard_triplet --init pretrained --pretrained-path "$RUNS/pretrain_lung_hard_triplet/model" --folds $FOLDS
finetune ft_lung_info_nce --init pretrained --pretrained-path "$RUNS/pretrain_lung_info_nce/model" --folds $FOLDS
finetune ft_lung_hard_triplet_mean_distance --init pretrained \
  --pretrained-path "$RUNS/pretrain_lung_hard_triplet_mean_distance/model" --folds 1 --no-final-model
finetune ft_busbra_hard_triplet --init pretrained --pretrained-path "$RUNS/pretrain_busbra_hard_triplet/model" \
  --folds 1 --no-final-model
finetune ft_both_hard_triplet --init pretrained --pretrained-path "$RUNS/pretrain_both_hard_triplet/model" \
  --folds 1 --no-final-model

python experiments/collect_results.py --output experiments/results/main_table.md \
  --run "random init=$RUNS/ft_random" \
  --run "hard triplet, mean_embedding (lung clips)=$RUNS/ft_lung_hard_triplet" \
  --run "InfoNCE (lung clips)=$RUNS/ft_lung_info_nce" \
  --run "hard triplet, mean_distance (lung clips)=$RUNS/ft_lung_hard_triplet_mean_distance" \
  --run "hard triplet (BUS-BRA images by patient)=$RUNS/ft_busbra_hard_triplet" \
  --run "hard triplet (lung clips + BUS-BRA)=$RUNS/ft_both_hard_triplet"
