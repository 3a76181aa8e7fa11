#!/usr/bin/env bash
# Experiment 3 (issue #7): hard triplet vs InfoNCE, the k-NN / linear-probe monitor against pretraining steps, same
# budget (the two lung-clip pretraining runs of main_table.sh; runs them if they are missing).
source "$(dirname "$0")/common.sh"
prepare_stores
pretrain pretrain_lung_hard_triplet experiments/configs/pretrain_cpu_lung_hard_triplet.yaml
pretrain pretrain_lung_info_nce experiments/configs/pretrain_cpu_lung_info_nce.yaml
python experiments/plot_convergence.py --output docs/figures/convergence.png \
  --run "hard triplet=$RUNS/pretrain_lung_hard_triplet" --run "InfoNCE=$RUNS/pretrain_lung_info_nce"
