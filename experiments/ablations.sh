#!/usr/bin/env bash
# Experiment 5 (issue #7): the knobs the paper leaves open — P and N counts, margin, number of hard positives /
# negatives, frame stride — as a small one-factor-at-a-time grid on the cheapest setting: short hard-triplet
# pretraining runs on the lung clips, scored by the pretraining monitor (k-NN and linear-probe AUC on BUS-BRA fold-1
# training-side images; no test fold is used, and nothing downstream is chosen from these numbers).
# Usage: STEPS=60 SIZE=96 bash experiments/ablations.sh
source "$(dirname "$0")/common.sh"
STEPS=${STEPS:-60}
SIZE=${SIZE:-96}
BASE=experiments/configs/pretrain_cpu_lung_hard_triplet.yaml
prepare_stores
[ -d "$STORES/covid_blues_stride10" ] || python -m training.prepare_data videos \
  --input "$DATA/covid_blues_lus_videos/lus_videos" --output "$STORES/covid_blues_stride10" \
  --patient-regex 'patient_(\d+)_' --frame-stride 10
[ -d "$STORES/pocus_stride10" ] || python -m training.prepare_data videos --input "$DATA/pocus_cc_by/clips" \
  --output "$STORES/pocus_stride10" --metadata "$DATA/pocus_cc_by/clips.csv" --frame-stride 10

run() {  # run NAME overrides...
  local name=$1; shift
  pretrain "ablation/$name" $BASE --max-steps "$STEPS" --image-size "$SIZE" --monitor-every "$STEPS" \
    --checkpoint-every "$STEPS" --warmup-steps 5 "$@"
}
run base
run P2_N16 --num-positives 2 --num-negatives 16
run P8_N64 --num-positives 8 --num-negatives 64
run margin0.2 --margin 0.2
run margin1.0 --margin 1.0
run hard1_4 --num-hard-positives 1 --num-hard-negatives 4
run hard_all --num-hard-positives 4 --num-hard-negatives 32
run stride10 --store-paths "$STORES/covid_blues_stride10" "$STORES/pocus_stride10"
python experiments/collect_ablations.py --runs "$RUNS/ablation" --output experiments/results/ablations.md
