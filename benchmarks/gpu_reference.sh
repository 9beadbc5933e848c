# Sourced by the GPU timing scripts once $python, $out_dir, $steps and $repeats are set:
# the machine's description (machine.txt), then the PyTorch reference on it
# (torch_celeba64.json), the figures each gan_jax row is compared with.
source benchmarks/ensure_ml_collections.sh

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  "$python" -c "import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__)"
  date -u +%Y-%m-%dT%H:%M:%SZ; } 2>&1 | tee "$out_dir/machine.txt"

echo "== PyTorch reference (one D + one G update, data on the GPU)"
"$python" benchmarks/torch_reference.py --device cuda --resolution 64 --batch 128,512 \
    --mode fp32,tf32,bf16 --steps "$steps" --warmup 10 --repeats "$repeats" \
    --json "$out_dir/torch_celeba64.json"
