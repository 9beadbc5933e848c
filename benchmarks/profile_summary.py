"""Where a GPU step's time goes: GPU kernels of a jax.profiler trace, by kind and by JAX op.

  python benchmarks/profile_summary.py TRACE_DIR --iterations N [--top 25]

TRACE_DIR is what `python -m gan_jax.bench ... --profile TRACE_DIR` wrote (it may hold
several traces: each is summarised on its own); N is the number of iterations the trace
covers (bench's --steps, times --scan). Reads the .xplane.pb files with
jax.profiler.ProfileData, so it needs neither TensorFlow nor TensorBoard.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re

from jax.profiler import ProfileData

# Kernel name fragments -> kind, first match wins (cuDNN and cuBLAS name their kernels so).
KINDS = (("convolution", ("conv", "xmma", "implicit_gemm", "cudnn", "dgrad", "wgrad")),
         ("matrix product", ("gemm", "nvjet", "cutlass", "triton_", "matmul")),
         ("reduction", ("reduce", "reduction")),
         ("copy / memset", ("copy", "memset", "memcpy", "transpose")),
         ("fusion (element-wise)", ("fusion", "loop_", "input_", "wrapped_")))


def kind_of(kernel: str) -> str:
  lowered = kernel.lower()
  for kind, fragments in KINDS:
    if any(f in lowered for f in fragments):
      return kind
  return "other"


def summarise(xplane: pathlib.Path, label: str, iterations: int, top: int) -> None:
  data = ProfileData.from_file(str(xplane))
  for plane in data.planes:
    if not plane.name.startswith("/device:GPU"):
      continue
    by_kind, by_op = collections.Counter(), collections.Counter()
    kind_count, op_count, op_kernel = collections.Counter(), collections.Counter(), {}
    first, last = None, None
    for line in plane.lines:
      if not line.name.startswith("Stream"):  # "XLA Ops" etc. repeat the streams' events
        continue
      for event in line.events:
        stats = dict(event.stats)
        # The JAX name stack ("name") where XLA gives it (not inside CUDA graphs: run with
        # XLA_FLAGS=--xla_gpu_enable_command_buffer= to see every op), else the HLO op.
        op = str(stats.get("name") or stats.get("hlo_op") or "?").removeprefix("jit(train_step)/")
        kind = kind_of(event.name) if not op.startswith(("copy", "memset")) else "copy / memset"
        duration = event.duration_ns / 1e3  # us
        by_kind[kind] += duration
        kind_count[kind] += 1
        by_op[op] += duration
        op_count[op] += 1
        op_kernel.setdefault(op, event.name)
        first = event.start_ns if first is None else min(first, event.start_ns)
        last = max(last or 0, event.start_ns + event.duration_ns)
    kernels, busy = sum(kind_count.values()), sum(by_kind.values())
    if not kernels:
      continue
    span = (last - first) / 1e3
    print(f"== {label} {plane.name}: {kernels / iterations:.0f} kernels and "
          f"{busy / iterations:,.0f} us busy per iteration, {span / iterations:,.0f} us traced "
          f"per iteration ({busy / span:.0%} busy)")
    print(f"{'kind':24s} {'per iter':>8s} {'us/iter':>9s} {'share':>6s} {'mean us':>8s}")
    for kind, us in by_kind.most_common():
      print(f"{kind:24s} {kind_count[kind] / iterations:8.0f} {us / iterations:9.0f} "
            f"{us / busy:6.1%} {us / kind_count[kind]:8.1f}")
    print(f"top {top} ops: us/iter, kernels/iter, mean us, op, first kernel")
    for op, us in by_op.most_common(top):
      kernel = re.sub(r"\s+", " ", op_kernel[op])[:90]
      print(f"{us / iterations:8.0f} {op_count[op] / iterations:5.1f} "
            f"{us / op_count[op]:8.1f}  {op[-90:]:90s} {kernel}")


def parse_args(description: str, top: int) -> argparse.Namespace:
  """TRACE_DIR --iterations N [--top K]: the arguments of this script and of cpu_profile.py."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("trace_dir", type=pathlib.Path)
  parser.add_argument("--iterations", type=int, required=True)
  parser.add_argument("--top", type=int, default=top)
  return parser.parse_args()


def traces(trace_dir: pathlib.Path) -> list[tuple[pathlib.Path, str]]:
  """(.xplane.pb file, the bench row's trace folder name) of every trace under `trace_dir`."""
  files = sorted(trace_dir.rglob("*.xplane.pb"))
  if not files:
    raise SystemExit(f"no .xplane.pb under {trace_dir}: run bench with --profile first")
  return [(xplane, xplane.relative_to(trace_dir).parts[0]) for xplane in files]


def main() -> None:
  args = parse_args(__doc__.splitlines()[0], top=25)
  for xplane, label in traces(args.trace_dir):
    summarise(xplane, label, args.iterations, args.top)


if __name__ == "__main__":
  main()
