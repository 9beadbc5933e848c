#!/usr/bin/env bash
# The full GPU comparison (docs/benchmarks.md): PyTorch reference vs gan_jax.bench on one
# GPU, DCGAN-64 (configs/celeba64.py), batch 128 and 512. Writes JSON results and a summary
# against the targets into the folder given as $1 (default benchmarks/results).
#
#   benchmarks/run_gpu.sh [OUT_DIR]
#
# Needs a Python (PYTHON, default python3) with jax[cuda], flax, optax, orbax-checkpoint,
# numpy, pillow, tqdm and torch (CUDA build). TensorFlow, tfds and clu are not needed.
# ml_collections is installed from wheels/*.whl when it is missing (no network needed):
#   pip download --no-deps ml_collections -d wheels
# Quick settings for a first look: STEPS=20 REPEATS=2 benchmarks/run_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir="${1:-benchmarks/results}"
python="${PYTHON:-python3}"
steps="${STEPS:-50}"
repeats="${REPEATS:-3}"
mkdir -p "$out_dir"

source benchmarks/gpu_reference.sh

echo "== gan_jax: the training step, model-only and with the device/numpy input paths"
"$python" -m gan_jax.bench --config configs/celeba64.py --batch 128,512 \
    --dtype float32,bfloat16 --steps "$steps" --warmup 10 --repeats "$repeats" \
    --json "$out_dir/jax_celeba64.json"

echo "== gan_jax: 10 iterations per call (lax.scan) at batch 128"
"$python" -m gan_jax.bench --config configs/celeba64.py --batch 128 --dtype float32,bfloat16 \
    --paths model,device --scan 10 --steps "$((steps * 2))" --warmup 2 --repeats "$repeats" \
    --json "$out_dir/jax_celeba64_scan10.json"

echo "== gan_jax: without XLA's deterministic GPU ops (train.deterministic=False)"
"$python" -m gan_jax.bench --config configs/celeba64.py --config.train.deterministic=False \
    --batch 128,512 --dtype bfloat16 --paths model --steps "$steps" --warmup 10 \
    --repeats "$repeats" --json "$out_dir/jax_celeba64_nondeterministic.json"

for impl in im2col im2col_rgb; do
  echo "== gan_jax: convolutions as im2col matrix products on the GPU too (model.conv_impl=$impl)"
  "$python" -m gan_jax.bench --config configs/celeba64.py --config.model.conv_impl=$impl \
      --batch 128,512 --dtype float32,bfloat16 --paths model --steps "$steps" --warmup 10 \
      --repeats "$repeats" --json "$out_dir/jax_celeba64_$impl.json"
done

echo "== summary against the targets"
"$python" - "$out_dir" <<'EOF' | tee "$out_dir/summary.txt"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
torch_rows = json.loads((out / "torch_celeba64.json").read_text())["rows"]
jax_rows = []  # each row labelled with the run (file) it comes from
for name in ("jax_celeba64", "jax_celeba64_scan10", "jax_celeba64_nondeterministic",
             "jax_celeba64_im2col", "jax_celeba64_im2col_rgb"):
  jax_rows += [{**row, "run": name} for row in json.loads((out / f"{name}.json").read_text())["rows"]]

def best(rows, **where):
  rows = [r for r in rows if all(r[k] == v for k, v in where.items())]
  return max(rows, key=lambda r: r["img_per_s"]) if rows else None

def describe(r):
  return ", ".join(f"{k}={r[k]}" for k in ("run", "mode", "dtype", "path", "scan") if k in r)

for batch in (128, 512):
  t, j = best(torch_rows, batch=batch), best(jax_rows, batch=batch, path="model")
  print(f"batch {batch}: best PyTorch {t['img_per_s']:.0f} img/s ({describe(t)}); best gan_jax "
        f"{j['img_per_s']:.0f} img/s ({describe(j)}): {j['img_per_s'] / t['img_per_s']:.2f}x")
t, j = best(torch_rows, batch=128), best(jax_rows, batch=128, path="model")
print(f"target batch 128 >= 4x best PyTorch: {j['img_per_s'] / t['img_per_s']:.2f}x")
bf16 = best(jax_rows, batch=512, dtype="bfloat16", path="model")
mfu = bf16["mfu"]
print(f"target batch 512 bf16 >= 35% MFU: {'n/a' if mfu is None else f'{mfu:.1%}'} "
      f"({bf16['tflops_per_s']:.0f} TFLOP/s against {bf16['peak_basis']})")
for r in jax_rows:
  if r["path"] != "model" and r["fraction_of_model"] is not None:
    print(f"target end-to-end >= 95% of model-only: batch {r['batch']} {r['dtype']} scan "
          f"{r['scan']} {r['path']}: {r['fraction_of_model']:.0%}")
EOF
echo "results in $out_dir"
