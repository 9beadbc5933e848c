"""The residual family's convolutions in forms that XLA:CPU runs fast.

The residual blocks (models/resnet.py) are built of 3x3 and 1x1 stride-1
convolutions, nearest 2x upsampling before a 3x3 convolution (G) and 2x2 average
pooling after one (D). XLA:CPU runs them as its own convolutions, whose kernel
gradients in particular reach a fraction of the matrix-product speed
(docs/benchmarks.md, the profile of resnet32). On a CPU this module computes the
same values with matrix products, reusing fast_conv's im2col products and their
backward pass written for XLA:CPU:

- a k x k stride-1 SAME convolution (k odd) as one product of the k*k shifted views
  side by side (im2col) with the (k*k*C, O) kernel; for k = 1 a plain product;
- upsample-then-3x3-convolve at the low resolution: output pixel (2u + a, 2v + b)
  only meets low-resolution rows u + a - 1 and u + a (and columns likewise), so each
  of the four output phases is a 2x2 convolution whose kernel sums the 3x3 taps that
  land on the same input pixel: 16 C O products per input pixel instead of 36;
- 3x3-convolve-then-average-pool as one 4x4 stride-2 convolution whose kernel is the
  3x3 kernel spread over the 2x2 pooling window (a quarter of each tap in four
  places), run as fast_conv's stride-2 im2col product: 16 C O products per output
  pixel instead of 36.

Summing taps before the product rounds differently from the plain form, so the
values agree to float32 rounding, not bit for bit (tests/models/test_fused_conv.py); seeded
runs still reproduce exactly on one machine. `impl` (config `model.conv_impl`):
`auto` takes the two folded forms on a CPU and XLA's own convolutions for the rest
and elsewhere (GPUs run them natively), `lax` XLA's convolutions everywhere (the
residual family until 2026-12-07), `im2col` this module's forms everywhere.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
import jax
import jax.numpy as jnp
from jax import lax

from gan_jax.models import fast_conv

IMPLS = ("auto", "lax", "im2col")
RESAMPLES = (None, "upsample_before", "pool_after")
_NHWC = ("NHWC", "HWIO", "NHWC")


def upsample2x(x: jax.Array) -> jax.Array:
  """Nearest-neighbour 2x upsampling of NHWC maps."""
  n, h, w, c = x.shape
  return jnp.broadcast_to(x[:, :, None, :, None], (n, h, 2, w, 2, c)).reshape(n, 2 * h, 2 * w, c)


def pool2x(x: jax.Array) -> jax.Array:
  """2x2 average pooling (stride 2) of NHWC maps with even sides."""
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _same_patches(size: int) -> Callable:
  """x -> [the im2col matrix of a size x size stride-1 SAME convolution], (N, H, W, k*k*C)
  with taps in (row, column, channel) order, the order of the HWIO kernel's reshape."""
  def patches(x):
    if size == 1:
      return [x]
    n, h, w, c = x.shape
    pad = size // 2
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return [jnp.concatenate([x[:, i:i + h, j:j + w] for i in range(size) for j in range(size)],
                            axis=-1)]
  return patches


def _conv_same(x, kernel, precision, operand_dtype):
  size, _, c, o = kernel.shape
  (y,) = fast_conv._patch_products(_same_patches(size), x, [kernel.reshape(size * size * c, o)],
                                   operand_dtype or x.dtype, precision)
  return y.astype(x.dtype)


# Upsampled row 2u + a + d (tap d + 1 of the 3x3 kernel, d in -1, 0, 1) is low-resolution
# row u + (a + d) // 2: phase a's two input rows (u + a - 1, u + a) take these taps.
_PHASE_TAPS = {0: ((0,), (1, 2)), 1: ((0, 1), (2,))}


def _phase_kernels(kernel: jax.Array) -> list[jax.Array]:
  """The four output phases' (2*2*C, O) matrices of upsample-then-convolve (3x3 kernel)."""
  c, o = kernel.shape[2:]
  rows = {a: jnp.stack([sum(kernel[t] for t in taps) for taps in _PHASE_TAPS[a]])
          for a in (0, 1)}  # (2, 3, C, O): the rows summed per phase
  matrices = []
  for a, b in fast_conv._PHASES:
    phase = jnp.stack([sum(rows[a][:, t] for t in taps) for taps in _PHASE_TAPS[b]], axis=1)
    matrices.append(phase.reshape(4 * c, o))
  return matrices


def _upsample_conv(x, kernel, precision, operand_dtype):
  outputs = fast_conv._patch_products(fast_conv._conv_transpose_patches, x, _phase_kernels(kernel),
                                      operand_dtype or x.dtype, precision)
  return fast_conv._interleave_phases(outputs).astype(x.dtype)


def _pool_kernel(kernel: jax.Array) -> jax.Array:
  """The 4x4 stride-2 kernel of conv3x3-then-pool2x: each tap a quarter in the four places
  the 2x2 pooling window shifts it to."""
  padded = [jnp.pad(kernel, ((a, 1 - a), (b, 1 - b), (0, 0), (0, 0)))
            for a in (0, 1) for b in (0, 1)]
  return 0.25 * sum(padded)


def _conv_pool(x, kernel, precision, operand_dtype):
  return fast_conv._im2col_conv(x, _pool_kernel(kernel), precision, operand_dtype)


def _plain(x, kernel, resample, precision, operand_dtype):
  """Today's maths with XLA's convolution: [upsample ->] conv [-> pool]."""
  if resample == "upsample_before":
    x = upsample2x(x)
  y = fast_conv._with_operand_dtype(
      lambda lhs, rhs, result: lax.conv_general_dilated(
          lhs, rhs, (1, 1), "SAME", dimension_numbers=_NHWC, precision=precision,
          preferred_element_type=result), x, kernel, operand_dtype)
  return y


_FAST = {None: _conv_same, "upsample_before": _upsample_conv, "pool_after": _conv_pool}


def conv(x: jax.Array, kernel: jax.Array, bias: jax.Array | None, resample: str | None = None,
         impl: str = "auto", precision=None, operand_dtype=None) -> jax.Array:
  """[upsample2x ->] SAME stride-1 conv(x, kernel) + bias [-> pool2x], NHWC / HWIO, odd kernel
  sizes; `operand_dtype` as in fast_conv (the products' operands, summed in float32)."""
  if impl not in IMPLS:
    raise ValueError(f"conv impl {impl!r} is not one of {', '.join(IMPLS)}")
  if resample not in RESAMPLES:
    raise ValueError(f"resample {resample!r} is not one of {RESAMPLES}")

  def plain(x, kernel):
    y = _plain(x, kernel, resample, precision, operand_dtype)
    y = y + bias.reshape(1, 1, 1, -1) if bias is not None else y
    return pool2x(y) if resample == "pool_after" else y

  def fast(x, kernel):
    if resample and kernel.shape[:2] != (3, 3):
      return plain(x, kernel)
    y = _FAST[resample](x, kernel, precision, operand_dtype)
    return y + bias.reshape(1, 1, 1, -1) if bias is not None else y

  # auto: XLA:CPU's own stride-1 convolution was as fast as im2col (profile of
  # 2026-12-07), so only the folded forms, which save FLOPs, replace it.
  if impl == "lax" or (impl == "auto" and resample is None):
    return plain(x, kernel)
  if impl == "im2col":
    return fast(x, kernel)
  return lax.platform_dependent(x, kernel, cpu=fast, default=plain)


class Conv(nn.Module):
  """nn.Conv(features, (size, size), padding='SAME') with the same parameters ('kernel' of
  shape (size, size, in, out), 'bias'), optionally with nearest 2x upsampling before it or
  2x2 average pooling after it, computed as `impl` says (IMPLS)."""
  features: int
  size: int = 3
  use_bias: bool = True
  resample: str | None = None  # RESAMPLES
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  dtype: Any = None  # computation dtype (None: the input's); params stay float32
  precision: Any = None
  impl: str = "auto"
  operand_dtype: Any = None  # the products' operand dtype (None: the computation dtype)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init,
                        (self.size, self.size, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    return conv(x, kernel, bias, self.resample, self.impl, self.precision, self.operand_dtype)
