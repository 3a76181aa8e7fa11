#!/usr/bin/env bash
# One lent-GPU run: three time-boxed scripts side by side on one GPU, the carried wheels installed once.
#   experiments/gpu/run_imagenet_arms.sh  recipe chosen on inner validation, the ImageNet / contrastive
#                                         arms with seeds, the default-model candidate (DenseNet121) (at most 8 jobs)
#   experiments/gpu/lesion.sh             the lesion segmenter, 5 folds + final model (3 workers)
#   experiments/gpu/label_efficiency.sh   ImageNet vs random init at 50-400 labels (2 workers)
# Each script stops its own work SCRIPT_DEADLINE_S after its start and works in its own folder $RUNS/<script>; this
# wrapper stops everything at DEADLINE_S.
# At the end the small text files are packed into run_logs.tar.gz, so that what comes back stays within the
# device tool's 8 files: gpu_runs.tar.gz, model_fp16.safetensors, lesion_model.safetensors, lesion_runs.tar.gz,
# label_efficiency.tar.gz, run_logs.tar.gz (the float32 copy of the default candidate is dropped: its fp16
# weights are what ships).
# Prepare here: the payload in .gpu_payload/ (experiments/gpu/run_imagenet_arms.sh says how; the BUS-BRA store with
# its `mask` column for lesion.sh).
# Run there:  OUT=/some/folder bash experiments/gpu/run_all.sh
# Smoke test on a CPU:  SMOKE=1 OUT=runs/smoke PAYLOAD=tiny_payload bash experiments/gpu/run_all.sh
set -uo pipefail
OUT=${OUT:-runs/gpu_out}
PAYLOAD=${PAYLOAD:-.gpu_payload}
RUNS=${RUNS:-runs/gpu/session_runs}
DEADLINE_S=${DEADLINE_S:-540}
SCRIPT_DEADLINE_S=${SCRIPT_DEADLINE_S:-450}
source experiments/gpu/common.sh

install_wheels || { log "installing the wheels failed"; exit 1; }
export WHEELS_INSTALLED=1
SCRIPTS=(run_imagenet_arms.sh lesion.sh label_efficiency.sh)
PIDS=()
for script in "${SCRIPTS[@]}"; do
  DEADLINE_S=$SCRIPT_DEADLINE_S RUNS=$RUNS/${script%.sh} timeout "$(seconds_left)" bash "experiments/gpu/$script" \
    > "$RUNS/${script%.sh}.out" 2>&1 &
  PIDS+=($!)
  log "started $script"
done
for index in "${!PIDS[@]}"; do
  wait "${PIDS[$index]}"
  log "${SCRIPTS[$index]} finished (rc $?)"
done
rm -rf "$OUT/final_model"
log "all done"
find "$OUT" -maxdepth 1 -type f \( -name '*.txt' -o -name '*.log' \) -exec mv {} "$RUNS/" \;
(cd "$RUNS" && find . -maxdepth 1 -type f -print0 | tar czf "$OUT/run_logs.tar.gz" --null -T -)
ls -l "$OUT"
