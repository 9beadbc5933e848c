#!/usr/bin/env bash
# Seeded fingerprints of two short CPU runs on the celeba6k faces (issue: a restructure
# changes no numbers). Usage: benchmarks/restructure_fingerprints.sh [FACES] [OUT_DIR]
# Prints one "config steps sha256" line per run; docs/reproducibility.md records them.
# The convolutions' operands stay in float32 (train.conv_dtype=""): the default "auto" takes
# bfloat16 on CPUs that have bfloat16 dot instructions, which would make the numbers differ
# between machines of the same code.
set -euo pipefail
faces=${1:-../shared/data/celeba6k}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
export JAX_PLATFORMS=cpu
for run in "tiny 60" "celeba32 30"; do
  set -- $run
  workdir="$out/$1"
  rm -rf "$workdir"
  python -m gan_jax.main --config "configs/$1.py" --workdir "$workdir" \
      --config.data.path="$faces" --config.train.num_steps="$2" --config.train.conv_dtype= \
      > "$out/$1.log" 2>&1
  echo "$1 $2 $(python -m gan_jax.checkpoint fingerprint "$workdir" 2>/dev/null | sed -n 1p)"
done
