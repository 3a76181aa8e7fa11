# Shared settings for the experiment scripts (sourced, not run). Override any of them in the environment.
set -euo pipefail
DATA=${DATA:-../shared/data}           # the development data (see ../shared/data/README.md)
STORES=${STORES:-stores}               # frame stores: stores/ in the repository root (git-ignored)
RUNS=${RUNS:-runs}                     # pretraining / fine-tuning outputs: runs/ (git-ignored)
# The shipped arm's pooled results (the default model's folds), what a new candidate arm is chosen against on
# validation (experiments/choose_by_validation.py)
SHIPPED=${SHIPPED:-experiments/shipped_models/results/whole_image_15_epochs/seed42/arm_results.json}
# The default model's fine-tuning recipe (ImageNet EfficientNet-Lite0, the default recipe, chosen by experiments/recipe/run.sh on
# fold 1's inner validation), for the scripts that rerun it (seeds, label efficiency, pretrained arms)
DEFAULT_RECIPE=(--config experiments/configs/finetune_gpu_lite0.yaml --store-path "$STORES/bus_bra" --image-size 192
                --learning-rate 1e-3 --backbone-lr-scale 0.3 --ema-decay 0.99 --tta-flip)
# Contrastive pretraining of the ImageNet Lite0 cut to one CPU thread (the lung and BUS-BRA arms): 4 anchors x
# (1 + 7 positives) + 64 shared negatives a step, lr 1e-4 (the config's), no label probe (selection: training loss);
# add --store-paths, --loss and --max-steps
CPU_PRETRAIN=(--config experiments/configs/pretrain_gpu_lite0.yaml --batch-size 4 --num-positives 7
              --num-negatives 64 --warmup-steps 10 --max-wall-minutes 30 --num-workers 1 --monitor-store "")

# finetune_run NAME ARGS...: the default recipe plus ARGS as one 1-thread fine-tuning into $RUNS/NAME, its log
# beside it (two processes side by side use both cores: 1.65x the throughput of one 2-thread process here)
finetune_run() {
  local name=$1; shift
  OMP_NUM_THREADS=1 python -m training.finetune "${DEFAULT_RECIPE[@]}" "$@" --output-dir "$RUNS/$name" \
    > "$RUNS/$name.log" 2>&1
}

# pool_arm ARM PARTS...: the parts pooled into $RUNS/ARM (pooled.json, arm_results.json, figures) with the choices
# of the caller's CHOICES array (YAML files, experiments/pool_predictions.py --choices)
pool_arm() {
  local arm=$1; shift
  mkdir -p "$RUNS/$arm"
  python experiments/pool_predictions.py "$@" --output "$RUNS/$arm/pooled.json" \
    --results-json "$RUNS/$arm/arm_results.json" --choices "${CHOICES[@]}"
}

# pretrain_encoder OUTPUT ARGS...: one 1-thread contrastive pretraining (CPU_PRETRAIN plus ARGS: stores, loss, steps,
# seed, excluded test patients) into OUTPUT, its log beside it
pretrain_encoder() {
  local output=$1; shift
  OMP_NUM_THREADS=1 python -m training.pretrain "${CPU_PRETRAIN[@]}" "$@" --output-dir "$output" > "$output.log" 2>&1
}

# finetune_from_encoder NAME ENCODER ARGS...: the default recipe plus ARGS from ENCODER/model into $RUNS/NAME; an
# ENCODER holding `{fold}` gives each fold its own encoder (pretrained without that fold's test patients)
finetune_from_encoder() {
  local name=$1 encoder=$2; shift 2
  finetune_run "$name" --init pretrained --pretrained-path "$encoder/model" "$@"
}

# Build the three stores once (idempotent: an existing store is kept).
prepare_stores() {
  [ -d "$STORES/covid_blues" ] || python -m training.prepare_data videos \
    --input "$DATA/covid_blues_lus_videos/lus_videos" --output "$STORES/covid_blues" --patient-regex 'patient_(\d+)_'
  [ -d "$STORES/pocus" ] || python -m training.prepare_data videos \
    --input "$DATA/pocus_cc_by/clips" --output "$STORES/pocus" --metadata "$DATA/pocus_cc_by/clips.csv"
  [ -d "$STORES/bus_bra" ] || python -m training.prepare_data images --input "$DATA/bus_bra" --output "$STORES/bus_bra"
}
