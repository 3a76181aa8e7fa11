#!/usr/bin/env bash
# Issue #7 at paper scale on one lent GPU, time-boxed (about 7 minutes a plan). PLAN=main: the main table (random
# init vs hard triplet in both positive_reduction modes vs InfoNCE, lung clips, BUS-BRA's official 5 folds) and the
# convergence curves. PLAN=sources_backbones: hard triplet pretrained on BUS-BRA images grouped by patient and on
# lung clips + BUS-BRA (fold 1; their pretraining never sees fold 1's test images), and DenseNet169 under the
# recipe with the best pretraining monitor (InfoNCE; the monitor uses training-side images only).
# Recipe fixed in advance (experiments/configs/pretrain_gpu_lung.yaml, finetune_gpu.yaml); only the number of
# pretraining steps and fine-tuning epochs comes from a timed step (experiments/gpu/size_run.py).
# Phase A: three pretrainings and the random-init cross-validation share the GPU; each pretrained arm's
# cross-validation starts when its pretraining ends. Fine-tuning has a hard deadline; folds finished by then are kept
# (folds_done.json). Everything small (JSON, CSV, logs, figures) is packed into $OUT/gpu_runs.tar.gz.
#
# Prepare here (stores and wheels into the ignored .gpu_payload/, under the tool's 64 MiB limit):
#   python experiments/gpu/pack_stores.py --stores stores/covid_blues stores/pocus stores/bus_bra \
#     --output .gpu_payload/stores
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .gpu_payload/wheels datasets evaluate dill \
#     multiprocess
# Run there:  OUT=/some/folder [PLAN=main] [STEPS=247 EPOCHS=4] bash experiments/gpu/run_paper_scale.sh
# (STEPS and EPOCHS given: no sizing step; otherwise sized from a timed step by experiments/gpu/size_run.py)
# Smoke test on a CPU (tiny backbone and shapes, fold 1 only):  SMOKE=1 OUT=runs/smoke bash experiments/gpu/...
set -uo pipefail
OUT=${OUT:-runs/gpu_out}
PLAN=${PLAN:-main}
PAYLOAD=${PAYLOAD:-.gpu_payload}
RUNS=${RUNS:-runs/gpu/gpu_runs}
BUDGET_S=${BUDGET_S:-360}          # pretraining + fine-tuning; set-up, sizing and packing come on top
DEADLINE_S=${DEADLINE_S:-480}      # from the start of this script: fine-tuning still running then is stopped
source experiments/gpu/common.sh

if [ "${SMOKE:-0}" = 1 ]; then
  SIZE_ARGS=(--backbone resnet10t --image-size 48 --batch-size 2)
  PRE_ARGS=("${SMOKE_PRETRAIN_ARGS[@]}")
  FT_ARGS=("${SMOKE_FINETUNE_ARGS[@]}")
  BUDGET_S=60 DEADLINE_S=400
else
  SIZE_ARGS=() PRE_ARGS=() FT_ARGS=()
fi

pretrain_arm() {  # NAME LOSS POSITIVE_REDUCTION
  $PY -m training.pretrain --config $EXP/pretrain_gpu_lung.yaml --store-paths "${LUNG[@]}" \
    --monitor-store "$STORES/bus_bra" --output-dir "$RUNS/$1" --loss "$2" --positive-reduction "$3" \
    --max-steps "$STEPS" --monitor-every "$MONITOR_EVERY" --warmup-steps $(( STEPS / 10 + 1 )) \
    --max-wall-minutes "$PRETRAIN_GUARD_MIN" "${PRE_ARGS[@]}" "${PRE_EXTRA[@]}" > "$RUNS/$1.log" 2>&1
}

finetune_arm() {  # NAME INIT_ARGS...
  local name=$1; shift
  finetune_run finetune_gpu.yaml "$name" --num-epochs "$EPOCHS" --no-save-fold-models --no-final-model \
    --num-workers 2 "$@" "${FT_ARGS[@]}" "${FT_EXTRA[@]}"
}

pretrained_arm() {  # PRETRAIN_NAME FINETUNE_NAME LOSS POSITIVE_REDUCTION (extra options: PRE_EXTRA, FT_EXTRA)
  pretrain_arm "$1" "$3" "$4"
  log "$1 finished (rc $?)"
  finetune_arm "$2" --init pretrained --pretrained-path "$RUNS/$1/model"
}

install_wheels || { log "installing the wheels failed"; exit 1; }
record_environment
log "set up: $(head -c 300 "$RUNS/environment.txt" | tr '\n' ' ')"
start_gpu_usage_log
if [ -z "${STEPS:-}" ] || [ -z "${EPOCHS:-}" ]; then
  eval "$($PY experiments/gpu/size_run.py --budget-s "$BUDGET_S" --output "$RUNS/sizing.json" "${SIZE_ARGS[@]}" \
    2> "$RUNS/sizing.log" | tail -1)"
fi
MONITOR_EVERY=${MONITOR_EVERY:-$(( ${STEPS:-5} / 5 ))}
[ -n "${STEPS:-}" ] || { log "sizing failed: $(tail -5 "$RUNS/sizing.log")"; pack_results; exit 1; }
PRETRAIN_GUARD_MIN=$($PY -c "print(round(0.6 * $BUDGET_S / 60, 2))")
log "sized: STEPS=$STEPS EPOCHS=$EPOCHS MONITOR_EVERY=$MONITOR_EVERY guard ${PRETRAIN_GUARD_MIN} min"

ARMS=() PRE_EXTRA=() FT_EXTRA=()
launch() { pretrained_arm "$@" & ARMS+=($!); }  # same arguments as pretrained_arm, in the background
case $PLAN in
  main)
    finetune_arm ft_random --init random & ARMS+=($!)
    launch pretrain_hard_triplet ft_hard_triplet hard_triplet mean_embedding
    launch pretrain_hard_triplet_mean_distance ft_hard_triplet_mean_distance hard_triplet mean_distance
    launch pretrain_info_nce ft_info_nce info_nce mean_embedding ;;
  sources_backbones)
    PRE_EXTRA=(--store-paths "$STORES/bus_bra" --exclude-test-of split_1) FT_EXTRA=(--folds 1)
    launch pretrain_busbra_hard_triplet ft_busbra_hard_triplet hard_triplet mean_embedding
    PRE_EXTRA=(--store-paths "${LUNG[@]}" "$STORES/bus_bra" --exclude-test-of split_1)
    launch pretrain_both_hard_triplet ft_both_hard_triplet hard_triplet mean_embedding
    PRE_EXTRA=(--backbone densenet169) FT_EXTRA=()
    launch pretrain_densenet169_info_nce ft_densenet169_info_nce info_nce mean_embedding ;;
  *) log "unknown PLAN=$PLAN (main | sources_backbones)"; exit 2 ;;
esac
wait "${ARMS[@]}"
kill "$USAGE_PID" 2>/dev/null
log "all arms done"
pack_results
