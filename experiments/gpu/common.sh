# Shared set-up for the time-boxed GPU scripts (sourced, not run): environment, logging, deadline, carried wheels,
# environment record and packing. The sourcing script sets OUT, RUNS, PAYLOAD and DEADLINE_S first.
STORES=$PAYLOAD/stores
LUNG=("$STORES/covid_blues" "$STORES/pocus")
EXP=experiments/configs
SITE=${SITE:-$PWD/runs/gpu/site}  # where the carried wheels are installed
PY=${PY:-python3}
if [ -d "$PAYLOAD/imagenet" ]; then  # compact offline ImageNet weights (training/imagenet_init.py) in the payload
  export USVCL_IMAGENET_WEIGHTS=$(cd "$PAYLOAD/imagenet" && pwd)
fi
# SMOKE=1: the same steps on a CPU with a tiny backbone and shapes, fold 1 only
SMOKE_PRETRAIN_ARGS=(--backbone resnet10t --image-size 48 --num-positives 2 --num-negatives 6 --batch-size 2
                     --monitor-max-images 40 --num-workers 1 --mixed-precision no)
SMOKE_FINETUNE_ARGS=(--backbone resnet10t --image-size 48 --folds 1 --bootstrap-samples 50 --mixed-precision no)
# ... and for experiments/configs/finetune_gpu_default.yaml, whose GPU settings a CPU smoke run turns off
SMOKE_DEFAULT_FINETUNE_ARGS=("${SMOKE_FINETUNE_ARGS[@]}" --num-epochs 2 --no-channels-last --num-workers 0)
START=$(date +%s)
mkdir -p "$OUT" "$RUNS"
OUT=$(cd "$OUT" && pwd) RUNS=$(cd "$RUNS" && pwd)  # absolute: the defaults are relative to the repository
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 PYTHONUNBUFFERED=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

log() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$OUT/${PROGRESS_NAME:-progress.txt}"; }
seconds_left() { local left=$(( START + DEADLINE_S - $(date +%s) )); echo $(( left > 1 ? left : 1 )); }

install_wheels() {  # the GPU image lacks datasets / evaluate: carried as wheels; an older datasets if pyarrow is old
  [ "${WHEELS_INSTALLED:-0}" = 1 ] && return 0  # a wrapper (run_all.sh) installed them for its scripts
  [ -d "$PAYLOAD/wheels" ] && [ "${SMOKE:-0}" != 1 ] || return 0
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$PAYLOAD"/wheels/*.whl || return 1
  export PYTHONPATH=$SITE:$PYTHONPATH
  if ! $PY -c "import datasets; datasets.load_from_disk('$STORES/bus_bra')[0]" >> "$OUT/setup.log" 2>&1; then
    log "datasets from wheels/ failed to load a store; trying wheels_fallback/"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "$PAYLOAD"/wheels_fallback/*.whl || return 1
  fi
}

record_environment() {
  { nvidia-smi || true; $PY -c "import torch, timm, transformers, datasets, accelerate, evaluate, pyarrow, sys
print(sys.version); print({m.__name__: m.__version__ for m in (torch, timm, transformers, datasets, accelerate,
evaluate, pyarrow)})"; echo "CPU cores: $(nproc --all) (OMP_NUM_THREADS=$OMP_NUM_THREADS)"; } > "$RUNS/environment.txt" 2>&1
}

start_gpu_usage_log() {  # GPU use every 5 s into $RUNS/gpu_usage.csv; sets USAGE_PID
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$RUNS/gpu_usage.csv" \
    2>/dev/null &
  USAGE_PID=$!
}

finetune_run() {  # CONFIG NAME OPTIONS...: cross-validate on BUS-BRA into $RUNS/NAME, stopped at the deadline
  local config=$1 name=$2; shift 2
  timeout "$(seconds_left)" $PY -m training.finetune --config "$EXP/$config" --store-path "$STORES/bus_bra" \
    --output-dir "$RUNS/$name" "$@" > "$RUNS/$name.log" 2>&1
  log "$name finished (rc $?)"
}

pack_results() {  # [ARCHIVE]: everything small (JSON, CSV, logs, figures) into $OUT/ARCHIVE (gpu_runs.tar.gz)
  local archive=$OUT/${1:-gpu_runs.tar.gz}
  tar czf "$archive" -C "$(dirname "$RUNS")" --exclude='*.safetensors' --exclude='*.bin' \
    --exclude=checkpoints --exclude=tb --exclude='*.pt' --exclude='*.pkl' "$(basename "$RUNS")"
  log "packed $(du -h "$archive" | cut -f1) into $archive"
}
