#!/usr/bin/env bash
# Issue 18's GPU path, measured in one go on one GPU (prepared for an H100; ~8 minutes in all):
#   1. the GPU unit tests (tests/test_gpu_path.py: inductor vs eager for the fixed network and the
#      supernet, bf16 + channels-last + compile training and its resume, STUDY.JOBS_PER_DEVICE
#      workers pinned to their GPU) and the CPU tests of the same features;
#   2. tools/bench.py --device cuda --variants gpu: the retraining step (DARTS_V2, cls) and the search
#      step in fp32 NCHW, fp32 channels-last, bf16 channels-last and bf16 channels-last + torch.compile,
#      each with images/s, peak CUDA memory and the fraction of the GPU's peak FLOP/s;
#   3. with time left, a small study on the synthetic data with 1 and with 3 jobs per GPU (wall time).
# Every step runs under `timeout` within the overall budget (GPU_CHECK_BUDGET seconds, default 470),
# so a slow compilation costs its own step only. Results go to $OUT (the device runner's output
# folder) when set, else runs/gpu_check/: *.json from the bench, *.log of every step, status.txt.
#
#   bash benchmarks/gpu_check.sh                 # from the repository root
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-runs/gpu_check}"
mkdir -p "$OUT_DIR"
BUDGET="${GPU_CHECK_BUDGET:-470}"
STATUS="$OUT_DIR/status.txt"
: > "$STATUS"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_FX_GRAPH_CACHE=1

# run NAME LIMIT CMD...: CMD under `timeout` (LIMIT seconds, cut to what the budget has left),
# stdout+stderr to $OUT_DIR/NAME.log; one status line per step
run() {
  local name="$1" limit="$2"; shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 20 ]; then
    echo "$name: skipped (budget of ${BUDGET}s spent)" | tee -a "$STATUS"
    return
  fi
  [ "$limit" -gt "$left" ] && limit="$left"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  local rc=$?
  local what="exit $rc"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 130 ] && what="timed out after ${limit}s"
  echo "$name: $what, $((SECONDS - t0)) s (log $name.log)" | tee -a "$STATUS"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO GPU')"
} > "$OUT_DIR/environment.txt" 2>&1
cat "$OUT_DIR/environment.txt"

run tests 170 python -m pytest -q -n 0 -p no:cacheprovider tests/test_gpu_path.py tests/test_compile.py \
  tests/test_study_devices.py

# the issue's configuration: width 16, depth 8, batch 32, 32x32 (bench defaults); 20 / 5 steps per
# repetition so that a repetition is long against a launch; warm-up covers compilation
BENCH=(python tools/bench.py --device cuda --threads 4 --warmup 2 --reps 5)
run bench_train 130 "${BENCH[@]}" --only train --train-tasks cls --variants gpu --steps 20 \
  --json "$OUT_DIR/bench_train.json"
run bench_search 90 "${BENCH[@]}" --only search --variants fp32-nchw,fp32-cl,bf16-cl --partial-channels 1 --steps 5 \
  --json "$OUT_DIR/bench_search.json"
run bench_search_compile 150 "${BENCH[@]}" --only search --variants bf16-cl-compile --partial-channels 1 --steps 5 \
  --json "$OUT_DIR/bench_search_compile.json"

# several study jobs per GPU: the same 12 small jobs (release-like width 4 / depth 3 networks, 2 epochs)
STUDY=(python tools/rank_corr.py run --num-archs 6 --tasks cls,rot --no-analyze DEVICE cuda STUDY.EPOCH_LOG False)
run study_1_per_gpu 75 "${STUDY[@]}" --out "$OUT_DIR/study_j1" STUDY.JOBS_PER_DEVICE 1
run study_3_per_gpu 75 "${STUDY[@]}" --out "$OUT_DIR/study_j3" STUDY.JOBS_PER_DEVICE 3

echo "--- status (${SECONDS} s in all)"
cat "$STATUS"
grep -h "^variant \|^ratio " "$OUT_DIR"/bench_*.log 2>/dev/null
grep -h "passed\|failed\|error" "$OUT_DIR/tests.log" 2>/dev/null | tail -3
for j in 1 3; do
  [ -f "$OUT_DIR/study_j$j.log" ] && echo "study, $j job(s) per GPU: $(grep -c '] done ' "$OUT_DIR/study_j$j.log") jobs done"
done
exit 0
