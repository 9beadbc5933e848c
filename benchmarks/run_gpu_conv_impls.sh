#!/usr/bin/env bash
# The GPU step by convolution form (model.conv_impl), beside the PyTorch reference, on one
# GPU in one call: DCGAN-64 (configs/celeba64.py), bfloat16, batch 128 and 512, model path;
# the last form also without XLA's deterministic ops and with --scan 10 at batch 128, and
# a jax.profiler trace of it at batch 128 (summarised by benchmarks/profile_summary.py)
# with its optimised HLO. Writes JSON, logs, summaries and archives into $1.
#
#   benchmarks/run_gpu_conv_impls.sh OUT_DIR
#
# IMPLS (default "auto im2col im2col_rgb"), STEPS, REPEATS. Needs what
# benchmarks/run_gpu.sh needs.
set -uo pipefail
cd "$(dirname "$0")/.."
out_dir="${1:?usage: $0 OUT_DIR}"
python="${PYTHON:-python3}"
steps="${STEPS:-50}"
repeats="${REPEATS:-3}"
impls="${IMPLS:-auto im2col im2col_rgb}"
mkdir -p "$out_dir"
source benchmarks/gpu_reference.sh

bench() {  # bench JSON_NAME [bench flags]: bfloat16 model-path rows of configs/celeba64.py
  local name="$1"; shift
  "$python" -m gan_jax.bench --config configs/celeba64.py --dtype bfloat16 --paths model "$@" \
      --json "$out_dir/$name.json"
}

for impl in $impls; do
  echo "== gan_jax bfloat16, model.conv_impl=$impl ($(date -u +%H:%M:%S))"
  bench "jax_$impl" --config.model.conv_impl="$impl" --batch 128,512 --steps "$steps" \
      --warmup 10 --repeats "$repeats"
done

last="${impls##* }"
echo "== gan_jax bfloat16, model.conv_impl=$last, train.deterministic=False"
bench "jax_${last}_nondeterministic" --config.model.conv_impl="$last" \
    --config.train.deterministic=False --batch 128,512 --steps "$steps" --warmup 10 \
    --repeats "$repeats"

for deterministic in True False; do
  echo "== gan_jax bfloat16, model.conv_impl=$last, train.deterministic=$deterministic, --scan 10"
  bench "jax_${last}_deterministic${deterministic}_scan10" --config.model.conv_impl="$last" \
      --config.train.deterministic="$deterministic" --batch 128 --scan 10 \
      --steps "$((steps * 2))" --warmup 2 --repeats "$repeats"
done

# Without CUDA graphs (command buffers) every kernel carries its JAX op name in the trace;
# the optimised HLO (fusion names -> ops) goes beside it.
echo "== profile, batch 128, model.conv_impl=$last, no command buffers ($(date -u +%H:%M:%S))"
rm -rf /tmp/gan_jax_profile /tmp/gan_jax_hlo
XLA_FLAGS="--xla_gpu_enable_command_buffer= --xla_dump_to=/tmp/gan_jax_hlo --xla_dump_hlo_as_text" \
  bench "jax_${last}_profiled" --config.model.conv_impl="$last" --batch 128 --steps 20 \
      --warmup 5 --repeats 1 --profile /tmp/gan_jax_profile
"$python" benchmarks/profile_summary.py /tmp/gan_jax_profile --iterations 20 --top 40 \
    | tee "$out_dir/profile_$last.txt"
tar -czf "$out_dir/profile.tgz" -C /tmp gan_jax_profile
tar -czf "$out_dir/hlo.tgz" -C /tmp/gan_jax_hlo $(cd /tmp/gan_jax_hlo && ls | grep -E "train_step.*(before|after)_optimizations.txt$")
echo "results in $out_dir ($(date -u +%H:%M:%S))"
