"""The peak FLOP/s of the CPU this process runs on, derived from what the CPU says of itself.

  peak = cores x FLOPs per cycle per core x clock

- cores: the cores this process may run on (its affinity mask; XLA:CPU runs one
  worker thread per core);
- FLOPs per cycle per core, float32: 2 (a fused multiply-add) x FMA pipes x lanes per
  pipe. AVX-512 Intel server cores have two 512-bit FMA pipes (64); AMD Zen 5 two
  512-bit pipes (64); AMD Zen 2-4 two 256-bit pipes (32: Zen 4 runs AVX-512 through
  them in two halves); other x86 cores with AVX2 and FMA two 256-bit pipes (32).
  bfloat16 products: twice the float32 rate with AVX512-BF16 (VDPBF16PS sums pairs),
  2,048 per cycle per core with AMX (one 16x32 by 32x16 tile product per 16 cycles);
  without either, XLA:CPU converts bfloat16 to float32, so the float32 peak;
- clock: the highest the kernel reports (cpufreq's cpuinfo_max_freq where there is
  one, else /proc/cpuinfo's "cpu MHz", which a virtual machine reports as the nominal
  clock; a core that boosts above it can exceed this peak).

The FMA pipe count is a property of the core design that no file names, so it comes
from the vendor and family (a table below); where it is unknown (other vendors or
architectures) the peak is unknown and `gan_jax.bench --peak_gflops` gives it by hand.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

CPUINFO = pathlib.Path("/proc/cpuinfo")
MAX_FREQ = pathlib.Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")


@dataclasses.dataclass(frozen=True)
class CpuPeak:
  model: str
  cores: int
  ghz: float
  fp32_per_cycle: int | None   # per core
  bf16_per_cycle: int | None
  bf16_basis: str              # which instructions the bfloat16 rate assumes

  def flops(self, dtype: str) -> float | None:
    per_cycle = self.bf16_per_cycle if dtype == "bfloat16" else self.fp32_per_cycle
    return self.cores * per_cycle * self.ghz * 1e9 if per_cycle else None

  def basis(self, dtype: str) -> str:
    per_cycle = self.bf16_per_cycle if dtype == "bfloat16" else self.fp32_per_cycle
    kind = self.bf16_basis if dtype == "bfloat16" else "fp32 FMA"
    if not per_cycle:
      return f"n/a (FMA pipes of {self.model!r} unknown; give --peak_gflops)"
    return f"{self.cores} cores x {per_cycle} {kind} FLOP/cycle x {self.ghz:.2f} GHz"


def _fields(text: str) -> dict[str, str]:
  """The first processor's 'key : value' lines of /proc/cpuinfo."""
  fields = {}
  for line in text.split("\n\n", 1)[0].splitlines():
    key, _, value = line.partition(":")
    fields[key.strip()] = value.strip()
  return fields


def fp32_flops_per_cycle(vendor: str, family: int, flags: set[str]) -> int | None:
  """float32 FLOPs per cycle per core (2 x FMA pipes x 32-bit lanes), None when unknown."""
  if "fma" not in flags:
    return None
  if vendor == "GenuineIntel":
    return 64 if "avx512f" in flags else 32
  if vendor == "AuthenticAMD":
    return 64 if family >= 26 and "avx512f" in flags else 32  # Zen 5 / Zen 2-4
  return None


def derive(cpuinfo: str, cores: int, max_khz: int | None = None) -> CpuPeak:
  """The peak of the CPU that `cpuinfo` (the text of /proc/cpuinfo) describes."""
  fields = _fields(cpuinfo)
  flags = set(fields.get("flags", "").split())
  vendor = fields.get("vendor_id", "")
  family = int(fields.get("cpu family", "0") or 0)
  mhz = float(fields.get("cpu MHz", "0") or 0)
  ghz = max(max_khz / 1e6 if max_khz else 0.0, mhz / 1e3)
  fp32 = fp32_flops_per_cycle(vendor, family, flags)
  if fp32 and "amx_bf16" in flags:
    bf16, bf16_basis = 2048, "AMX bf16"
  elif fp32 and "avx512_bf16" in flags:
    bf16, bf16_basis = 2 * fp32, "AVX512-BF16"
  else:
    bf16, bf16_basis = fp32, "fp32 FMA (no bf16 dot instructions)"
  model = fields.get("model name", "unknown CPU")
  return CpuPeak(model, cores, ghz, fp32, bf16, bf16_basis)


def this_cpu() -> CpuPeak | None:
  """The peak of this machine's CPU, None where /proc/cpuinfo is missing (not Linux)."""
  try:
    text = CPUINFO.read_text()
  except OSError:
    return None
  try:
    max_khz = int(MAX_FREQ.read_text())
  except (OSError, ValueError):
    max_khz = None
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return derive(text, cores or 1, max_khz)
