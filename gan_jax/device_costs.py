"""What a compiled training step costs on a device: FLOPs, the device's peak, memory.

`gan_jax.bench` divides the FLOPs XLA counts for one iteration by the measured
time and by the device's peak FLOP/s (MFU), and reports the compiled
program's memory beside the process's peak.
"""

from __future__ import annotations

from typing import Callable

# Dense (no sparsity) peak FLOP/s per GPU from NVIDIA's datasheets, first match
# of device_kind wins: (name, bfloat16, tf32, float32).
PEAK_FLOPS = (
    ("H200", 989.4e12, 494.7e12, 66.9e12),
    ("H100 PCIe", 756.0e12, 378.0e12, 51.2e12),
    ("H100 NVL", 835.0e12, 417.5e12, 60.0e12),
    ("H100", 989.4e12, 494.7e12, 66.9e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0e12, 156.0e12, 19.5e12),
)


def peak_flops(device, dtype: str) -> tuple[float | None, str]:
  """(peak FLOP/s, which peak) of `device` for `dtype`; (None, reason) when unknown.

  A CPU's peak is derived from the CPU itself (gan_jax/cpu_peak.py): all the cores
  this process may use, for the products' dtype. On a GPU, float32 convolutions and matmuls run as TF32 on Ampere and later GPUs at
  JAX's default precision, so float32 rows are held against the TF32 peak,
  unless jax_default_matmul_precision asks for full float32.
  """
  if device.platform == "cpu":
    from gan_jax import cpu_peak  # pylint: disable=import-outside-toplevel
    cpu = cpu_peak.this_cpu()
    if cpu is None:
      return None, "n/a (no /proc/cpuinfo; give --peak_gflops)"
    return cpu.flops(dtype), cpu.basis(dtype)
  if device.platform != "gpu":
    return None, f"n/a ({device.platform})"
  for name, bf16, tf32, fp32 in PEAK_FLOPS:
    if name in device.device_kind:
      if dtype == "bfloat16":
        return bf16, f"{name} bf16"
      import jax  # pylint: disable=import-outside-toplevel
      precision = str(jax.config.jax_default_matmul_precision or "default").lower()
      if precision in ("highest", "float32", "tensorfloat32x3"):
        return fp32, f"{name} fp32"
      return tf32, f"{name} tf32"
  return None, f"n/a (no peak known for {device.device_kind!r})"


def cost_flops(stage) -> float | None:
  """FLOPs of one call of a lowered or compiled step, per XLA's cost analysis."""
  try:
    cost = stage.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None  # not every backend implements it
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0] if cost else None
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def model_flops(step_fn: Callable, state, batch_shape, batch_dtype) -> float | None:
  """FLOPs of one training iteration on one device, counted by XLA on the step lowered
  for the CPU, before optimisation.

  There DCGAN's convolutions are matrix products (models/fast_conv.py), which XLA
  counts exactly; a GPU's analysis of the compiled step leaves out the convolutions
  that cuDNN runs (under 1% of them were left on an H100). Lowering needs no CPU
  memory: the arguments are shapes only.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from gan_jax import parallel  # pylint: disable=import-outside-toplevel
  try:
    cpu = jax.devices("cpu")[:1]
  except RuntimeError:  # JAX_PLATFORMS without cpu
    return None
  runner = parallel.DataParallel(step_fn, mesh=parallel.make_mesh(cpu))
  on_cpu = jax.sharding.NamedSharding(runner.mesh, jax.sharding.PartitionSpec())

  def shape_of(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=on_cpu)

  args = (jax.tree.map(shape_of, state), jax.ShapeDtypeStruct(batch_shape, batch_dtype,
                                                               sharding=on_cpu),
          jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=on_cpu))
  try:
    return cost_flops(runner.step.lower(*args))
  except Exception:  # pylint: disable=broad-except
    return None


def compiled_memory(compiled) -> int | None:
  """Bytes the compiled program needs on one device: arguments, outputs, temporaries."""
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if stats is None:
    return None
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
             + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def peak_memory(device) -> int | None:
  """The process's peak bytes on `device` so far (None where the backend keeps no count)."""
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None
