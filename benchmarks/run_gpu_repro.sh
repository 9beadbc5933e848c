#!/usr/bin/env bash
# Do seeded runs reproduce bit for bit on this machine? (docs/reproducibility.md, "GPU
# measurement"): two runs of STEPS steps and one stopped at half and resumed, on seeded
# synthetic faces; prints the three final fingerprints, which must be equal, and exits 1
# if they are not. Extra arguments go to every run:
#
#   benchmarks/run_gpu_repro.sh --config.model.conv_impl=im2col_rgb
#
# CONFIG (default configs/celeba64.py), SIZE (its resolution, 64), STEPS (300). Needs what
# benchmarks/run_gpu.sh needs, without torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
config="${CONFIG:-configs/celeba64.py}"
size="${SIZE:-64}"
steps="${STEPS:-300}"
source benchmarks/ensure_ml_collections.sh
work="$(mktemp -d)"
"$python" -c "import numpy as np, sys; np.save(sys.argv[1], np.random.default_rng(0).integers(
    0, 256, (6000, $size, $size, 3), dtype=np.uint8))" "$work/faces.npy"
common=(--config "$config" --config.data.path="$work/faces.npy" --config.train.num_steps="$steps"
        --config.checkpoint_every="$((steps / 3))" --config.sample_every=100000000
        --config.log_every="$((steps / 3))" "$@")
"$python" -m gan_jax.main "${common[@]}" --workdir "$work/a"
"$python" -m gan_jax.main "${common[@]}" --workdir "$work/b"
"$python" -m gan_jax.main "${common[@]}" --workdir "$work/c" --config.train.num_steps="$((steps / 2))"
"$python" -m gan_jax.main "${common[@]}" --workdir "$work/c"  # resumes at steps / 2
fingerprints=()
for run in a b c; do
  report=$("$python" -m gan_jax.checkpoint fingerprint "$work/$run")
  fingerprints+=("${report%%$'\n'*}")  # the hash line; the rest is the run's run.json
  echo "run $run ($*): ${fingerprints[-1]}"
done
[[ "${fingerprints[0]}" == "${fingerprints[1]}" && "${fingerprints[0]}" == "${fingerprints[2]}" ]] \
  && echo "equal: seeded runs reproduce" || { echo "NOT equal"; exit 1; }
