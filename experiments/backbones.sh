#!/usr/bin/env bash
# Experiment 4 (issue #7): DenseNet121 / 169 / 201 under the best recipe. A GPU run (paper scale, 224 px); on the
# 2-core CPU each would take hours, so it was skipped there (docs/results.md says so).
# Usage: bash experiments/backbones.sh   (on a GPU machine; `accelerate launch` for several GPUs)
source "$(dirname "$0")/common.sh"
prepare_stores
for backbone in densenet121 densenet169 densenet201; do
  pretrain "pretrain_${backbone}" training/configs/paper_densenet121.yaml --backbone "$backbone" --num-epochs 20
  FINETUNE_CONFIG=experiments/configs/finetune_gpu.yaml finetune "ft_${backbone}" --init pretrained \
    --pretrained-path "$RUNS/pretrain_${backbone}/model"
done
python experiments/collect_results.py --output experiments/results/backbones.md \
  --run "densenet121=$RUNS/ft_densenet121" --run "densenet169=$RUNS/ft_densenet169" \
  --run "densenet201=$RUNS/ft_densenet201"
