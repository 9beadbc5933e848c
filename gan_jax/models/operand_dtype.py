"""train.conv_dtype: the dtype of the convolutions' matrix-product operands.

bfloat16 operands summed in float32 are the fast CPU mode where the CPU multiplies
bfloat16 natively (AVX512-BF16 or AMX): XLA:CPU's bfloat16 products ran 1.4-2.5x
the float32 step of the DCGAN and 1.2x the residual one on an AMD EPYC with
AVX512-BF16 (docs/benchmarks.md). Without those instructions XLA:CPU converts
bfloat16 to float32 for the product, which only costs time. So:

- ""        the computation dtype (train.dtype);
- "auto"    bfloat16 on a CPU with bfloat16 dot instructions, else as "" (GPUs and
            TPUs keep train.dtype: their float32 products already run as TF32/bf16
            passes by JAX's default precision);
- "float32" / "bfloat16": that dtype wherever it runs.

A choice the CPU cannot honour falls back or runs slowly, and says so once.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
from absl import logging

CHOICES = ("", "auto", "float32", "bfloat16")
BF16_DOT_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = pathlib.Path("/proc/cpuinfo")


def cpu_flags() -> frozenset[str]:
  """The first processor's flags in /proc/cpuinfo (empty where there is none)."""
  try:
    for line in CPUINFO.read_text().splitlines():
      if line.startswith("flags"):
        return frozenset(line.partition(":")[2].split())
  except OSError:
    pass
  return frozenset()


@functools.cache
def _say_once(message: str) -> None:
  logging.warning("%s", message)


def resolve(choice: str, platform: str | None = None, flags: frozenset[str] | None = None):
  """The operand dtype `choice` (CHOICES) means on `platform` (default: JAX's default
  backend): a numpy dtype, or None for the computation dtype."""
  platform = platform or jax.default_backend()
  flags = cpu_flags() if flags is None else flags
  has_bf16_dot = platform == "cpu" and bool(flags & BF16_DOT_FLAGS)
  if choice == "auto":
    if platform == "cpu" and not has_bf16_dot:
      _say_once("train.conv_dtype=auto: this CPU has no bfloat16 dot instructions (AVX512-BF16 "
                "or AMX), so the convolutions' operands stay in train.dtype")
    return jnp.dtype(jnp.bfloat16) if has_bf16_dot else None
  if choice == "bfloat16" and platform == "cpu" and not has_bf16_dot:
    _say_once("train.conv_dtype=bfloat16 on a CPU without bfloat16 dot instructions: XLA "
              "converts the operands to float32 for each product (slower, same maths); "
              "train.conv_dtype=auto picks float32 here")
  return jnp.dtype(choice) if choice else None
