"""train.conv_dtype=auto: bfloat16 products where the CPU has bfloat16 dot instructions."""

import jax.numpy as jnp
from absl import logging

from gan_jax.models import operand_dtype

BF16 = frozenset({"avx2", "fma", "avx512f", "avx512_bf16"})
AMX = frozenset({"avx2", "fma", "amx_bf16"})
NO_BF16 = frozenset({"avx2", "fma", "avx512f"})
READ_CPU_FLAGS = operand_dtype.cpu_flags  # conftest replaces it during the tests


def test_auto_takes_bfloat16_only_on_cpus_with_bf16_dots():
  assert operand_dtype.resolve("auto", "cpu", BF16) == jnp.bfloat16
  assert operand_dtype.resolve("auto", "cpu", AMX) == jnp.bfloat16
  assert operand_dtype.resolve("auto", "cpu", NO_BF16) is None   # train.dtype's
  assert operand_dtype.resolve("auto", "gpu", BF16) is None       # GPUs keep train.dtype


def test_explicit_choices_hold_everywhere():
  for platform, flags in (("cpu", NO_BF16), ("cpu", BF16), ("gpu", frozenset())):
    assert operand_dtype.resolve("", platform, flags) is None
    assert operand_dtype.resolve("float32", platform, flags) == jnp.float32
    assert operand_dtype.resolve("bfloat16", platform, flags) == jnp.bfloat16


def test_a_cpu_without_bf16_dots_is_told_once(monkeypatch):
  """auto falls back to train.dtype and says so once; bfloat16 runs and says it is slow, once."""
  said = []
  monkeypatch.setattr(logging, "warning", lambda fmt, *args: said.append(fmt % args))
  operand_dtype._say_once.cache_clear()
  for _ in range(3):
    operand_dtype.resolve("auto", "cpu", NO_BF16)
    operand_dtype.resolve("bfloat16", "cpu", NO_BF16)
    operand_dtype.resolve("auto", "cpu", BF16)
  assert len(said) == 2
  assert "no bfloat16 dot instructions" in said[0] and "stay in train.dtype" in said[0]
  assert "train.conv_dtype=bfloat16" in said[1] and "slower" in said[1]
  operand_dtype._say_once.cache_clear()


def test_cpu_flags_read_from_cpuinfo(tmp_path, monkeypatch):
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 fma\n\nprocessor\t: 1\n")
  monkeypatch.setattr(operand_dtype, "CPUINFO", cpuinfo)
  assert READ_CPU_FLAGS() == {"fpu", "avx512_bf16", "fma"}
  monkeypatch.setattr(operand_dtype, "CPUINFO", tmp_path / "absent")
  assert READ_CPU_FLAGS() == frozenset()
