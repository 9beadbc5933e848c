#!/usr/bin/env bash
# On one GPU machine: docs/results.md's rows (benchmarks/results.py: every config trained on
# real faces and evaluated, plus the PyTorch baseline) and docs/benchmarks.md's FID
# feature-extraction speed. Results go into the folder given as $1 (default
# benchmarks/results): machine.txt, inception_{299,64}.json, results.tgz (results.json and
# each row's log, metrics, curves and sample grid; rewritten as rows finish).
#
#   FACES=../shared/data/celeba6k benchmarks/run_gpu_results.sh [OUT_DIR]
#
# Settings (environment): FACES (a folder of face photos), IMAGES (images seen per run,
# 512000), NUM_SAMPLES (generated faces per FID, 5000), JOBS (runs sharing the GPU, 4),
# HOLDOUT (set aside the last N faces and report FID against them too, 0 = off),
# ONLY (comma-separated row names), DEADLINE_S (start no row after this many seconds),
# INCEPTION_IMAGES (per timed window, 4000), EVAL_BATCH (250), PROFILE=1 (then also a jax.profiler trace
# of the celeba64 bf16 batch-128 step:
# profile.tgz). Needs what run_gpu.sh needs, and the FID Inception weights
# (`python -m gan_jax.metrics.weights fetch`, or GAN_JAX_CACHE pointing at a copy).
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir="$(mkdir -p "${1:-benchmarks/results}" && cd "${1:-benchmarks/results}" && pwd)"
python="${PYTHON:-python3}"
faces="${FACES:-../shared/data/celeba6k}"
source benchmarks/ensure_ml_collections.sh
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several processes share the GPU
# One compilation of the Inception network (and of repeated shapes) for all processes.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/gan_jax_xla_cache}"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$python" -c "import jax; print('jax', jax.__version__, jax.devices())"
  # torch only for the PyTorch baseline row; its absence (a CPU dry run) is not an error here.
  "$python" -c "import torch; print('torch', torch.__version__)" 2>/dev/null || echo "torch: not installed"
  date -u +%Y-%m-%dT%H:%M:%SZ; } 2>&1 | tee "$out_dir/machine.txt"

echo "== FID feature extraction (Inception pool3, float32 HIGHEST), 299 px and 64 px inputs"
for size in 299 64; do
  "$python" -m gan_jax.metrics.inception --images "${INCEPTION_IMAGES:-4000}" \
      --batch "${EVAL_BATCH:-250}" --size "$size" --json "$out_dir/inception_$size.json"
done

echo "== every config trained on $faces and evaluated (benchmarks/results.py)"
status=0
"$python" benchmarks/results.py --faces "$faces" --out "${RUNS:-runs/results}" \
    --images "${IMAGES:-512000}" --num_samples "${NUM_SAMPLES:-5000}" \
    --eval_batch "${EVAL_BATCH:-250}" --jobs "${JOBS:-4}" --only "${ONLY:-}" \
    --holdout "${HOLDOUT:-0}" \
    --deadline_s "${DEADLINE_S:-0}" --pack "$out_dir/results.tgz" || status=$?

if [[ "${PROFILE:-0}" == 1 ]]; then
  echo "== profile: celeba64, bfloat16, batch 128 (jax.profiler trace)"
  rm -rf /tmp/gan_jax_profile
  "$python" -m gan_jax.bench --config configs/celeba64.py --batch 128 --dtype bfloat16 \
      --paths model --steps 20 --warmup 5 --repeats 2 --profile /tmp/gan_jax_profile \
      --json "$out_dir/bench_profiled.json"
  tar -czf "$out_dir/profile.tgz" -C /tmp gan_jax_profile
fi
echo "results in $out_dir"
exit "$status"
