#!/usr/bin/env bash
# ImageNet-initialised EfficientNet-Lite0 against in-domain and lung contrastive pretraining, on one lent GPU,
# time-boxed (DEADLINE_S, about 7 minutes of work). Everything on BUS-BRA's official 5 folds, every choice on mean
# inner-validation AUC (experiments/choose_by_validation.py), never on a test fold.
#   1. Recipe search (ImageNet init): CANDIDATES below (learning rate x schedule length x augmentation / EMA /
#      label smoothing / flip TTA), 5 folds + final model each; meanwhile the contrastive pretrainings from ImageNet
#      (experiments/configs/pretrain_gpu_lite0.yaml): hard triplet and InfoNCE on the lung clips, and InfoNCE on
#      BUS-BRA images grouped by patient, once per fold without that fold's test patients (exclude_test_of) and
#      once on all images for the final model.
#   2. Arms at the chosen recipe, most important first: random init; lung InfoNCE; lung hard triplet; BUS-BRA
#      per fold ("{fold}" in the pretrained path); ImageNet seeds 43 and 44; then seeds 43 and 44 of the BUS-BRA,
#      InfoNCE and triplet arms (the chosen ImageNet candidate is ImageNet seed 42). Seed-42 arms train a final model.
#   3. The default candidate: among the shippable runs with a final model (ImageNet, BUS-BRA; the lung arms used
#      COVID-BLUES, whose licence forbids shipping derived models), the one with the best mean validation AUC; its
#      final model goes to $OUT as fp16 (model_fp16.safetensors) and float32 in two shards (final_model/).
# At most MAX_JOBS processes share the GPU (default: half the cores, at most 8); fine-tuning augments on the GPU and
# needs no data workers; each pretraining has 2 (at most 4 pretrainings at once: <= 8 data workers). A process still
# running at its deadline is stopped; finished folds stay (folds_done.json, predictions_done.csv).
#
# Prepare here (ignored .gpu_payload/, about 40 MB: with the 24 MB working tree under the tool's 64 MiB):
#   python experiments/gpu/pack_stores.py --stores stores/bus_bra --output .gpu_payload/stores        # 22.5 MiB
#   python experiments/gpu/pack_stores.py --stores stores/covid_blues stores/pocus --output .gpu_payload/stores \
#     --max-side 128 --quality 70                                                                       # 7.9 MiB
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .gpu_payload/wheels datasets==5.2.0 \
#     evaluate==0.4.6 dill multiprocess                                                                 # 1 MB
#   python -m training.imagenet_init --output .gpu_payload/imagenet --dtype float16  # 6.9 MB, instead of the wheel
# Run there:  OUT=/some/folder bash experiments/gpu/run_imagenet_arms.sh
# Back: $OUT/gpu_runs.tar.gz (every run's results.json, predictions.csv, logs, choices, environment), the default
# candidate's weights, $OUT/progress.txt. Smoke test on a CPU:  SMOKE=1 OUT=runs/smoke bash experiments/gpu/...
set -uo pipefail
OUT=${OUT:-runs/gpu_out}
PAYLOAD=${PAYLOAD:-.gpu_payload}
RUNS=${RUNS:-runs/gpu/imagenet_runs}
DEADLINE_S=${DEADLINE_S:-420}      # every process still running this long after the start is stopped
SEARCH_S=${SEARCH_S:-210}          # recipe-search runs still running then are stopped (their finished folds count)
PRETRAIN_MIN=${PRETRAIN_MIN:-1.5}  # wall-clock guard of each lung pretraining; BUS-BRA ones get half
FP32_SHARDS=${FP32_SHARDS:-1}      # 0: only the fp16 weights come back (2 files fewer in $OUT)
MAX_JOBS=${MAX_JOBS:-$(( $(nproc) / 2 < 8 ? ($(nproc) / 2 > 2 ? $(nproc) / 2 : 2) : 8 ))}
SEEDS=(${SEEDS:-43 44})
SEED_ARMS=(busbra lung_info_nce lung_hard_triplet)  # pretrained arms that get the extra SEEDS, in this order
FOLDS=(1 2 3 4 5)
FT_CONFIG=finetune_gpu_lite0.yaml
PRE_CONFIG=pretrain_gpu_lite0.yaml
declare -A CANDIDATES=(  # name -> fine-tuning options (on top of $FT_CONFIG)
  [lr5e-4_e15]="--learning-rate 5e-4 --num-epochs 15"
  [lr1e-3_e15]="--learning-rate 1e-3 --num-epochs 15"
  [lr5e-4_e25_strong_ema]="--learning-rate 5e-4 --num-epochs 25 --augment-policy strong --ema-decay 0.995"
  [lr1e-3_e15_light_ls_ema_tta]="--learning-rate 1e-3 --backbone-lr-scale 0.3 --num-epochs 15 --augment-policy light
    --label-smoothing 0.1 --ema-decay 0.99 --tta-flip"
)
source experiments/gpu/common.sh

if [ "${SMOKE:-0}" = 1 ]; then  # same steps, tiny shapes, fold 1 only (the real backbone: its weights are offline)
  FOLDS=(1) SEEDS=(43) SEED_ARMS=(busbra) MAX_JOBS=2 SEARCH_S=600 DEADLINE_S=1300 PRETRAIN_MIN=0.3
  unset "CANDIDATES[lr1e-3_e15]" "CANDIDATES[lr5e-4_e25_strong_ema]"  # two candidates are enough to choose
  PRE_ARGS=(--image-size 32 --num-positives 2 --num-negatives 6 --batch-size 2 --max-steps 3 --warmup-steps 1
            --monitor-max-images 40 --num-workers 0 --mixed-precision no)
  FT_ARGS=(--image-size 32 --folds 1 --bootstrap-samples 50 --mixed-precision no --no-channels-last
           --max-steps-per-epoch 2)
  for name in "${!CANDIDATES[@]}"; do CANDIDATES[$name]="${CANDIDATES[$name]/--num-epochs 25/--num-epochs 2}"; done
  for name in "${!CANDIDATES[@]}"; do CANDIDATES[$name]="${CANDIDATES[$name]/--num-epochs 15/--num-epochs 1}"; done
else
  PRE_ARGS=() FT_ARGS=(--folds "${FOLDS[@]}")
fi

JOB_PIDS=()
throttle() {  # wait until fewer than MAX_JOBS of our jobs run
  while :; do
    local alive=0 pid
    for pid in "${JOB_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=$(( alive + 1 )); done
    (( alive < MAX_JOBS )) && return
    sleep 1
  done
}

finetune_job() {  # NAME END_S OPTIONS...: one cross-validation run into $RUNS/NAME, stopped END_S s after the start
  local name=$1 end_s=$2; shift 2
  local left=$(( START + end_s - $(date +%s) ))
  (( left > 5 )) || { log "$name skipped: no time left"; return 0; }
  timeout "$left" $PY -m training.finetune --config "$EXP/$FT_CONFIG" --store-path "$STORES/bus_bra" \
    --output-dir "$RUNS/$name" "$@" "${FT_ARGS[@]}" > "$RUNS/$name.log" 2>&1
  log "$name finished (rc $?)"
}

pretrain_job() {  # NAME GUARD_MIN OPTIONS...: contrastive pretraining from ImageNet into $RUNS/NAME
  local name=$1 guard=$2; shift 2
  timeout "$(seconds_left)" $PY -m training.pretrain --config "$EXP/$PRE_CONFIG" --monitor-store "$STORES/bus_bra" \
    --output-dir "$RUNS/$name" --max-wall-minutes "$guard" "$@" "${PRE_ARGS[@]}" > "$RUNS/$name.log" 2>&1
  log "$name finished (rc $?)"
}

launch() {  # FUNCTION ARGS...: in the background once a slot is free
  throttle
  "$@" &
  JOB_PIDS+=($!)
}

choose() {  # OUTPUT NAME RESULT_FILES...: the run with the best mean validation AUC (last line), or nothing; the
  local output=$1 name=$2; shift 2  # choice NAME is recorded in the chosen run's results.json (the model card)
  [ $# -gt 0 ] || return 0
  $PY experiments/choose_by_validation.py "$@" --output "$output" --choice "$name" 2>> "$RUNS/choices.log" | tail -1
}

finished_results() {  # RUN_FOLDERS...: each folder's results.json, else its folds_done.json (stopped early)
  local run
  for run in "$@"; do
    if [ -f "$run/results.json" ]; then echo "$run/results.json"
    elif [ -f "$run/folds_done.json" ]; then echo "$run/folds_done.json"; fi
  done
}

phase_search() {  # recipe candidates and every pretraining; sets SEARCH_PIDS and PRE_* pids
  SEARCH_PIDS=()
  for name in "${!CANDIDATES[@]}"; do
    launch finetune_job "search_$name" "$SEARCH_S" ${CANDIDATES[$name]}
    SEARCH_PIDS+=($!)
  done
  launch pretrain_job pretrain_lung_info_nce "$PRETRAIN_MIN" --store-paths "${LUNG[@]}" --loss info_nce
  PRE_LUNG_INFO_NCE=$!
  launch pretrain_job pretrain_lung_hard_triplet "$PRETRAIN_MIN" --store-paths "${LUNG[@]}" --loss hard_triplet
  PRE_LUNG_TRIPLET=$!
  BUSBRA_PIDS=()
  local half fold
  half=$($PY -c "print(round($PRETRAIN_MIN / 2, 2))")
  for fold in "${FOLDS[@]}" all; do
    local exclude=(--exclude-test-of "split_$fold" --monitor-split-column "split_$fold")
    [ "$fold" = all ] && exclude=()
    launch pretrain_job "pretrain_busbra_$fold" "$half" --store-paths "$STORES/bus_bra" "${exclude[@]}"
    BUSBRA_PIDS+=($!)
  done
}

choose_recipe() {  # waits for the search; sets RECIPE_NAME and RECIPE (options)
  wait "${SEARCH_PIDS[@]}"
  local results chosen
  local runs=() name
  for name in "${!CANDIDATES[@]}"; do runs+=("$RUNS/search_$name"); done
  mapfile -t results < <(finished_results "${runs[@]}")
  chosen=$(choose "$RUNS/recipe_choice.json" "fine-tuning recipe" "${results[@]}")
  RECIPE_NAME=$(basename "${chosen:-$RUNS/search_lr5e-4_e15}")
  RECIPE_NAME=${RECIPE_NAME#search_}
  RECIPE=${CANDIDATES[$RECIPE_NAME]}
  log "recipe chosen on validation: $RECIPE_NAME ($RECIPE)"
}

phase_arms() {  # the arms at the chosen recipe, most important first
  launch finetune_job ft_random_s42 "$DEADLINE_S" $RECIPE --init random --no-final-model
  wait "$PRE_LUNG_INFO_NCE"
  launch finetune_job ft_lung_info_nce_s42 "$DEADLINE_S" $RECIPE --init pretrained \
    --pretrained-path "$RUNS/pretrain_lung_info_nce/model"
  wait "$PRE_LUNG_TRIPLET"
  launch finetune_job ft_lung_hard_triplet_s42 "$DEADLINE_S" $RECIPE --init pretrained \
    --pretrained-path "$RUNS/pretrain_lung_hard_triplet/model"
  local seed
  for seed in "${SEEDS[@]}"; do
    launch finetune_job "ft_imagenet_s$seed" "$DEADLINE_S" $RECIPE --seed "$seed" --no-final-model
  done
  wait "${BUSBRA_PIDS[@]}"
  launch finetune_job ft_busbra_s42 "$DEADLINE_S" $RECIPE --init pretrained \
    --pretrained-path "$RUNS/pretrain_busbra_{fold}/model"
  local arm
  for seed in "${SEEDS[@]}"; do
    for arm in "${SEED_ARMS[@]}"; do  # pretrain_<arm>/model, "{fold}" for the per-fold BUS-BRA encoders
      local path="$RUNS/pretrain_$arm/model"
      [ "$arm" = busbra ] && path="$RUNS/pretrain_busbra_{fold}/model"
      launch finetune_job "ft_${arm}_s$seed" "$DEADLINE_S" $RECIPE --seed "$seed" --no-final-model \
        --init pretrained --pretrained-path "$path"
    done
  done
}

export_default() {  # the default candidate: best mean validation AUC among the shippable runs with a final model
  local candidates=() run chosen  # not the lung arms: COVID-BLUES's licence forbids shipping anything derived
  for run in "$RUNS/search_$RECIPE_NAME" "$RUNS/ft_busbra_s42"; do
    [ -f "$run/results.json" ] && [ -f "$run/final_model/model.safetensors" ] && candidates+=("$run/results.json")
  done
  chosen=$(choose "$RUNS/default_choice.json" "initialisation (arm)" "${candidates[@]}")
  [ -n "$chosen" ] || { log "no run with a final model finished: no default candidate"; return 1; }
  log "default candidate chosen on validation: $chosen"
  $PY -c "import json, sys; from experiments.choose_by_validation import record_choice
record_choice({**json.load(open(sys.argv[1])), 'chosen': sys.argv[2]}, 'fine-tuning recipe')" \
    "$RUNS/recipe_choice.json" "$chosen" >> "$RUNS/choices.log" 2>&1  # the recipe choice beside it, for the card
  $PY - "$chosen/final_model" "$OUT" "$RUNS/default_model" "$FP32_SHARDS" <<'EOF' >> "$RUNS/export.log" 2>&1
import shutil, sys
from pathlib import Path

from safetensors.torch import load_file, save_file
import usvcl_hf

source, out, small = (Path(argument) for argument in sys.argv[1:4])
model = usvcl_hf.UsvclForImageClassification.from_pretrained(source)
model.save_pretrained(small, max_shard_size="10MB")  # float32 in shards of <= 10 MB
for name in ("preprocessor_config.json",):
    shutil.copy(source / name, small / name)
for shard in small.glob("*.safetensors"):  # float32 shards to $OUT/final_model, or dropped (FP32_SHARDS=0)
    if sys.argv[4] == "1":
        (out / "final_model").mkdir(parents=True, exist_ok=True)
        shutil.move(str(shard), out / "final_model" / shard.name)
    else:
        shard.unlink()
weights = load_file(str(source / "model.safetensors"))
save_file({key: value.half() if value.is_floating_point() else value for key, value in weights.items()},
          str(out / "model_fp16.safetensors"))
print(f"default candidate {source}: float32 shards in {out / 'final_model'}, fp16 in {out / 'model_fp16.safetensors'}")
EOF
  log "default candidate weights: $(du -ch "$OUT"/final_model/*.safetensors "$OUT/model_fp16.safetensors" 2>/dev/null \
    | tail -1)"
}

install_wheels || { log "installing the wheels failed"; exit 1; }
record_environment
log "set up: $(grep -m1 -o 'NVIDIA [A-Z0-9]*' "$RUNS/environment.txt" || echo no GPU); $(nproc) cores, $MAX_JOBS jobs"
start_gpu_usage_log
phase_search
choose_recipe
phase_arms
wait "${JOB_PIDS[@]}"
log "all runs done"
export_default
kill "$USAGE_PID" 2>/dev/null
pack_results
