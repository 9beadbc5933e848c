"""DCGAN's stride-2 4x4 convolutions in a form that XLA:CPU runs fast.

XLA:CPU runs a stride-2 convolution's input gradient, a transposed convolution
and the kernel gradients of both (dilated convolutions) through slow generic
loops: a DCGAN-32 step took ~10x as long as with the matrix products below
(docs/benchmarks.md). On a CPU these functions compute the same values as the
lax calls with slices, concatenations and matrix products only (im2col), so
their gradients are matrix products too. On GPU/TPU they lower to the plain lax
calls, which cuDNN/XLA run natively; `lax.platform_dependent` picks the branch
when the step is compiled. `impl="im2col"` (config `model.conv_impl`) takes the
matrix-product form on every platform: an H100 profile showed cuDNN computing
the kernel gradient of G's last layer on 2 thread blocks (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
import jax
import jax.numpy as jnp
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")
IMPLS = ("auto", "im2col")  # auto: im2col on CPU, the lax convolution elsewhere
_NHWC_SPEC = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def _is_stride2_k4(kernel_shape, strides, padding, *dilations) -> bool:
  return (tuple(kernel_shape[:2]) == (4, 4) and tuple(strides) == (2, 2)
          and padding == "SAME" and all(set(d or (1,)) == {1} for d in dilations))


def _im2col_conv(x: jax.Array, kernel: jax.Array, precision) -> jax.Array:
  """conv(x, kernel, stride 2, SAME) for a 4x4 kernel and even H, W, as one matrix
  product: the 16 taps' strided views of the padded input side by side."""
  n, h, w, c = x.shape
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  patches = jnp.concatenate([x[:, i:i + h:2, j:j + w:2] for i in range(4) for j in range(4)],
                            axis=-1)
  return jnp.dot(patches, kernel.reshape(16 * c, kernel.shape[3]), precision=precision)


def _im2col_conv_transpose(x: jax.Array, kernel: jax.Array, precision) -> jax.Array:
  """lax.conv_transpose(x, kernel, (2, 2), 'SAME') for a 4x4 kernel, as four matrix
  products: output pixel (2u + a, 2v + b) only meets taps (a::2, b::2), which read
  the 2x2 input window at (u + a - 1, v + b - 1); the four phases are interleaved."""
  n, h, w, c = x.shape
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = []
  for a in (0, 1):
    phases = []
    for b in (0, 1):
      patches = jnp.concatenate([x[:, a + i:a + i + h, b + j:b + j + w] for i in (0, 1)
                                 for j in (0, 1)], axis=-1)
      taps = kernel[a::2, b::2].reshape(4 * c, kernel.shape[3])
      phases.append(jnp.dot(patches, taps, precision=precision))
    rows.append(jnp.stack(phases, axis=3))  # (n, h, w, b, c)
  return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, kernel.shape[3])  # (n, h, a, w, b, c)


def _choose(impl: str, operands, im2col: Callable, plain: Callable):
  if impl == "im2col":
    return im2col(*operands)
  if impl != "auto":
    raise ValueError(f"conv impl {impl!r} is not one of {', '.join(IMPLS)}")
  return lax.platform_dependent(*operands, cpu=im2col, default=plain)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None, impl: str = "auto"):
  """lax.conv_general_dilated, with stride-2 4x4 SAME NHWC convolutions rewritten on CPU
  (or everywhere with impl="im2col"); pass as `nn.Conv(..., conv_general_dilated=...)`."""
  def plain(lhs, rhs):
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, batch_group_count,
                                    precision, preferred_element_type)

  if not (lhs.ndim == 4 and dimension_numbers is not None
          and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == _NHWC_SPEC
          and _is_stride2_k4(rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation)
          and lhs.shape[1] % 2 == 0 and lhs.shape[2] % 2 == 0
          and feature_group_count == 1 and batch_group_count == 1
          and preferred_element_type is None):
    return plain(lhs, rhs)
  return _choose(impl, (lhs, rhs), lambda x, k: _im2col_conv(x, k, precision), plain)


def conv_transpose_stride2(x: jax.Array, kernel: jax.Array, precision=None,
                           impl: str = "auto") -> jax.Array:
  """lax.conv_transpose(x, kernel, (2, 2), 'SAME') in NHWC/HWIO for a 4x4 kernel, fast on CPU."""
  def plain(x, kernel):
    return lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=NHWC,
                              precision=precision)
  return _choose(impl, (x, kernel), lambda x, k: _im2col_conv_transpose(x, k, precision), plain)


class ConvTranspose2x(nn.Module):
  """nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding='SAME') with the same
  parameters ('kernel' of shape (4, 4, in, out), optional 'bias'), fast on CPU."""
  features: int
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  dtype: Any = None  # computation dtype (None: the input's); params stay float32
  precision: Any = None
  impl: str = "auto"  # see IMPLS

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features),
                        jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv_transpose_stride2(x, kernel, self.precision, self.impl)
    return y + bias if bias is not None else y

