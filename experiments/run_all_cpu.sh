#!/usr/bin/env bash
# Every CPU-scale experiment of docs/results.md, most important first (each step is skipped when its output
# exists, so the script can be re-run after an interruption). About 2 hours on a 2-core CPU.
source "$(dirname "$0")/common.sh"
EXP=experiments/configs
prepare_stores
pretrain pretrain_lung_hard_triplet $EXP/pretrain_cpu_lung_hard_triplet.yaml
finetune ft_random --init random
finetune ft_lung_hard_triplet --init pretrained --pretrained-path "$RUNS/pretrain_lung_hard_triplet/model"
pretrain pretrain_lung_info_nce $EXP/pretrain_cpu_lung_info_nce.yaml
bash experiments/convergence.sh
finetune ft_lung_info_nce --init pretrained --pretrained-path "$RUNS/pretrain_lung_info_nce/model"
bash experiments/saliency.sh
bash experiments/label_efficiency.sh "$RUNS/pretrain_lung_hard_triplet/model" 1 2
bash experiments/main_table.sh
