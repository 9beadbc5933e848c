#!/usr/bin/env bash
# CPU side by side (issue #40): the PyTorch reference (benchmarks/torch_reference.py) and
# `python -m gan_jax.bench` on the same networks and batches, alternately (torch, gan_jax,
# torch, gan_jax, ...) for ROUNDS rounds, both systems' float32 and bfloat16 modes, so every
# ratio comes from one run on one machine. Writes each run's JSON, log.txt and summary.txt
# (img/s per round and best of rounds, gan_jax's best mode over PyTorch's) into OUT_DIR.
#
#   benchmarks/cpu_side_by_side.sh OUT_DIR
#   MODEL=celeba32 BATCH=128 ROUNDS=3 STEPS=10 benchmarks/cpu_side_by_side.sh OUT_DIR
#
# MODEL: resnet32 (default; BATCH default 64,128) or celeba32 (BATCH default 128), or their
# 64 px configs. STEPS (10), WARMUP (3), REPEATS (3): per timed row of either system.
# PYTHON (python): one with jax, flax and torch.
# resnet32 runs without its DiffAugment and EMA of G (--config.augment.policy=
# --config.train.ema_decay=0): the PyTorch reference builds neither. gan_jax's float32 row
# is float32/float32: plain float32 products, whatever train.conv_dtype's default picks.
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir="${1:?usage: benchmarks/cpu_side_by_side.sh OUT_DIR}"
python="${PYTHON:-python}"
model="${MODEL:-resnet32}"
rounds="${ROUNDS:-3}"
timing=(--steps "${STEPS:-10}" --warmup "${WARMUP:-3}" --repeats "${REPEATS:-3}")
case "$model" in
  resnet32|resnet64)
    torch_model=resnet batch="${BATCH:-64,128}"
    jax_options="--config.augment.policy= --config.train.ema_decay=0" ;;
  celeba32|celeba64) torch_model=dcgan batch="${BATCH:-128}" jax_options="" ;;
  *) echo "MODEL=$model: use resnet32, celeba32, resnet64 or celeba64" >&2; exit 2 ;;
esac
resolution="${model: -2}"
mkdir -p "$out_dir"
exec > >(tee -a "$out_dir/log.txt") 2>&1

cpu="$(lscpu | grep 'Model name' | sed 's/.*: *//')"
echo "== $(date -u '+%F %T UTC'): $model, batch $batch, $rounds rounds"
echo "CPU: $cpu"
echo "cores this process may use: $(nproc)"
for round in $(seq 1 "$rounds"); do
  echo "== round $round/$rounds: PyTorch; uptime: $(uptime)"
  "$python" benchmarks/torch_reference.py --device cpu --model "$torch_model" \
      --resolution "$resolution" --batch "$batch" --mode fp32,bf16 "${timing[@]}" \
      --json "$out_dir/torch_$round.json"
  echo "== round $round/$rounds: gan_jax; uptime: $(uptime)"
  # shellcheck disable=SC2086  # jax_options: words, none with spaces
  "$python" -m gan_jax.bench --config "configs/$model.py" $jax_options --batch "$batch" \
      --dtype float32/float32,float32/bfloat16 --paths model "${timing[@]}" \
      --json "$out_dir/jax_$round.json"
done
echo "== done; uptime: $(uptime)"

echo "== summary"
"$python" - "$out_dir" "$rounds" "$cpu, $(nproc) cores" <<'EOF' | tee "$out_dir/summary.txt"
import json, pathlib, sys
out, rounds, cpu = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
runs = {system: [json.loads((out / f"{system}_{r}.json").read_text())["rows"]
                 for r in range(1, rounds + 1)] for system in ("torch", "jax")}
first = json.loads((out / "jax_1.json").read_text())
torch_run = json.loads((out / "torch_1.json").read_text())
print(f"{first['date']} on {cpu}: jax {first['jax_version']}, PyTorch {torch_run['torch_version']}"
      f" ({torch_run['threads']} threads)\n{first['command']}")

def speeds(system, batch):
  """{mode: [img/s per round]} of one system at one batch."""
  table = {}
  for rows in runs[system]:
    for row in rows:
      if row["batch"] == batch:
        table.setdefault(row.get("mode") or row["dtype"], []).append(row["img_per_s"])
  return table

for batch in sorted({row["batch"] for row in runs["jax"][0]}):
  print(f"\nbatch {batch}: img/s per round, then the best of rounds")
  best = {}
  for system, name in (("torch", "PyTorch"), ("jax", "gan_jax")):
    for mode, values in speeds(system, batch).items():
      print(f"  {name:8} {mode:>17} " + " ".join(f"{v:8.1f}" for v in values) +
            f"   best {max(values):8.1f}")
      if max(values) > best.get(system, (None, 0))[1]:
        best[system] = (mode, max(values))
  per_round = [max(r["img_per_s"] for r in j if r["batch"] == batch) /
               max(r["img_per_s"] for r in t if r["batch"] == batch)
               for t, j in zip(runs["torch"], runs["jax"])]
  (jax_mode, jax_best), (torch_mode, torch_best) = best["jax"], best["torch"]
  print(f"  gan_jax best ({jax_mode}) / PyTorch best ({torch_mode}): {jax_best / torch_best:.2f}x;"
        f" per round: " + " ".join(f"{ratio:.2f}x" for ratio in per_round))
  row = max((r for rows in runs["jax"] for r in rows if r["batch"] == batch),
            key=lambda r: r["img_per_s"])
  if row.get("tflops_per_s"):
    mfu = f", {row['mfu']:.1%} of {row['peak_basis']}" if row.get("mfu") else ""
    print(f"  gan_jax best: {1e3 * row['tflops_per_s']:.0f} GFLOP/s{mfu}")
EOF
echo "results in $out_dir"
