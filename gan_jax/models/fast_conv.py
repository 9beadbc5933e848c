"""DCGAN's stride-2 4x4 convolutions in a form that XLA:CPU runs fast.

XLA:CPU runs a stride-2 convolution's input gradient, a transposed convolution
and the kernel gradients of both (dilated convolutions) through slow generic
loops: a DCGAN-32 step took ~10x as long as with the matrix products below
(docs/benchmarks.md). On a CPU these functions compute the same values as the
lax calls with slices, concatenations and matrix products only (im2col; G's RGB
layer as one product and shifted sums), with a hand-written backward pass that
is matrix products and slices too. On GPU/TPU they lower to the plain lax
calls, which cuDNN/XLA run natively; `lax.platform_dependent` picks the branch
when the step is compiled. `model.conv_impl` chooses (IMPLS): `im2col` takes the
matrix-product form for every layer on every platform, `im2col_rgb` only for the two
layers with 3-channel operands (G's last, D's first) and `auto` elsewhere. cuDNN picks
poor kernels for those two (an H100 profile showed the kernel gradient of G's last
layer on 2 thread blocks); on an H200 `im2col_rgb` made the bfloat16 step 1.35-1.47x
as fast (docs/benchmarks.md). It is not the default until its GPU runs are shown to
reproduce bit for bit as `auto`'s are (docs/reproducibility.md).

With `operand_dtype=bfloat16` (config `train.conv_dtype`) the products take
bfloat16 operands and sum in float32, while activations, batch norm and the
parameters keep their own dtype: on CPUs with AMX or AVX512-BF16 that is the fast
mode, since XLA:CPU computes bfloat16 element-wise work through float32 converts.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
import jax
import jax.numpy as jnp
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")
# auto: im2col on CPU, the lax convolution elsewhere. im2col: im2col for every layer on
# every platform. im2col_rgb: im2col on every platform for the layers with at most
# RGB_CHANNELS input or output channels, auto for the others.
IMPLS = ("auto", "im2col", "im2col_rgb")
RGB_CHANNELS = 3
_NHWC_SPEC = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def _is_stride2_k4(kernel_shape, strides, padding, *dilations) -> bool:
  return (tuple(kernel_shape[:2]) == (4, 4) and tuple(strides) == (2, 2)
          and padding == "SAME" and all(set(d or (1,)) == {1} for d in dilations))


def _conv_patches(x: jax.Array) -> list[jax.Array]:
  """The im2col matrix of conv(x, 4x4 kernel, stride 2, SAME) for even H, W: the 16
  taps' strided views of the padded input side by side, (N, H/2, W/2, 16 C)."""
  n, h, w, c = x.shape
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return [jnp.concatenate([x[:, i:i + h:2, j:j + w:2] for i in range(4) for j in range(4)],
                          axis=-1)]


_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


def _conv_transpose_patches(x: jax.Array) -> list[jax.Array]:
  """The four phases' im2col matrices of conv_transpose(x, 4x4, stride 2, SAME): output
  pixel (2u + a, 2v + b) only meets taps (a::2, b::2), which read the 2x2 input window
  at (u + a - 1, v + b - 1); one (N, H, W, 4 C) matrix per phase (a, b)."""
  n, h, w, c = x.shape
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return [jnp.concatenate([x[:, a + i:a + i + h, b + j:b + j + w] for i in (0, 1) for j in (0, 1)],
                          axis=-1) for a, b in _PHASES]


def _interleave_phases(outputs: list[jax.Array]) -> jax.Array:
  """The four phases' (N, H, W, O) outputs as one (N, 2H, 2W, O) image."""
  n, h, w, o = outputs[0].shape
  rows = [jnp.stack(outputs[2 * a:2 * a + 2], axis=3) for a in (0, 1)]  # (n, h, w, b, o)
  return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, o)  # (n, h, a, w, b, o)


def _move_bits(move: Callable, x: jax.Array) -> list[jax.Array]:
  """move(x) for a pure data movement (pad, slice, concatenate). XLA:CPU widens 16-bit
  float concatenations to float32 and back (a convert pass per tap in the profile) but
  moves 16-bit integers as they are, so 16-bit floats travel as their bit patterns."""
  if x.dtype.itemsize != 2 or not jnp.issubdtype(x.dtype, jnp.floating):
    return move(x)
  bits = move(lax.bitcast_convert_type(x, jnp.uint16))
  return [lax.bitcast_convert_type(b, x.dtype) for b in bits]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3, 4))
def _patch_products(patches_of: Callable, x: jax.Array, matrices: list[jax.Array],
                    operand_dtype, precision) -> list[jax.Array]:
  """[dot(p, m) for p, m in zip(patches_of(x), matrices)], operands in `operand_dtype`,
  float32 results, with a backward pass written for XLA:CPU's matrix products (below)."""
  return _patch_products_fwd(patches_of, x, matrices, operand_dtype, precision)[0]


def _patch_products_fwd(patches_of, x, matrices, operand_dtype, precision):
  patches = _move_bits(patches_of, x.astype(operand_dtype))
  outputs = [jnp.dot(p, m.astype(operand_dtype), precision=precision,
                     preferred_element_type=jnp.float32) for p, m in zip(patches, matrices)]
  return outputs, (patches, matrices, x)


def _patch_products_bwd(patches_of, operand_dtype, precision, residuals, output_grads):
  patches, matrices, x = residuals
  grads = [g.astype(operand_dtype) for g in output_grads]
  # g W^T with W^T materialised (it is small): XLA:CPU's library ran the product with a
  # transposed right operand up to 2x slower than the plain one (docs/benchmarks.md).
  patch_grads = [jnp.dot(g, lax.optimization_barrier(m.astype(operand_dtype).T),
                         precision=precision, preferred_element_type=jnp.float32)
                 for g, m in zip(grads, matrices)]
  # col2im: the transpose of the (linear) patch extraction, summed in float32.
  (x_grad,) = jax.linear_transpose(patches_of, jax.ShapeDtypeStruct(x.shape, jnp.float32))(
      patch_grads)
  matrix_grads = [_kernel_grad(g, p, precision) for g, p in zip(grads, patches)]
  return x_grad.astype(x.dtype), [dm.astype(m.dtype) for dm, m in zip(matrix_grads, matrices)]


def _kernel_grad(g: jax.Array, patches: jax.Array, precision) -> jax.Array:
  """dW = P^T g for one product, as (g^T P)^T: only g (not the 16x larger patch matrix P)
  gets transposed, and the barrier keeps XLA from folding the final transpose into the
  product's layout, a form XLA:CPU's matrix-product library does not take.

  The pixel axis is contracted as (M/2, 2) rather than as (n, h, w), over which XLA
  reordered the patch rows first (a copy of P per layer and pass), or as one axis, over
  which it moved the bfloat16 product to a float32 fallback (docs/benchmarks.md)."""
  o, k = g.shape[-1], patches.shape[-1]
  rows = g.size // o
  if rows % 2:
    pixel_grad = jnp.einsum("nhwo,nhwk->ok", g, patches, precision=precision,
                            preferred_element_type=jnp.float32)
  else:
    pixel_grad = jnp.einsum("mso,msk->ok", g.reshape(rows // 2, 2, o),
                            patches.reshape(rows // 2, 2, k), precision=precision,
                            preferred_element_type=jnp.float32)
  return lax.optimization_barrier(pixel_grad).T


_patch_products.defvjp(_patch_products_fwd, _patch_products_bwd)


def _im2col_conv(x: jax.Array, kernel: jax.Array, precision, operand_dtype) -> jax.Array:
  """conv(x, kernel, stride 2, SAME) for a 4x4 kernel and even H, W, as one matrix product."""
  c, o = kernel.shape[2:]
  (y,) = _patch_products(_conv_patches, x, [kernel.reshape(16 * c, o)],
                         operand_dtype or x.dtype, precision)
  return y.astype(x.dtype)


# Along one axis, from 2u + 2 - i = 2t + a: tap i feeds output phase a = i % 2 and reads
# input u = t + (i + a - 2) / 2. Phase a -> ((tap i, input shift u - t), ...).
_TAP_SHIFTS = {0: ((0, -1), (2, 0)), 1: ((1, 0), (3, 1))}


def _col2im_conv_transpose(x: jax.Array, kernel: jax.Array, precision) -> jax.Array:
  """lax.conv_transpose(x, kernel, (2, 2), 'SAME') for a 4x4 kernel as one product per
  input pixel, z = x W with all 16 taps, then each output phase as a sum of four shifted
  views of z: input (u, v) and tap (i, j) land on output (2u + 2 - i, 2v + 2 - j), so
  output (2t + a, 2s + b) sums the taps i = a, a + 2 (and j likewise) of the inputs
  shifted by -1, 0 or +1 as _TAP_SHIFTS says. Slices, pads and adds only (no scatter):
  one fused pass on a GPU."""
  n, h, w, c = x.shape
  o = kernel.shape[3]
  z = jnp.dot(x.reshape(-1, c), kernel.transpose(2, 0, 1, 3).reshape(c, 16 * o),
              precision=precision).reshape(n, h, w, 4, 4, o)
  z = jnp.pad(z, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0), (0, 0)))  # zeros outside the image
  phases = [sum(z[:, 1 + di:1 + di + h, 1 + dj:1 + dj + w, i, j]
                for i, di in _TAP_SHIFTS[a] for j, dj in _TAP_SHIFTS[b])
            for a, b in _PHASES]
  return _interleave_phases(phases)


def _im2col_conv_transpose(x: jax.Array, kernel: jax.Array, precision,
                           operand_dtype) -> jax.Array:
  """lax.conv_transpose(x, kernel, (2, 2), 'SAME') for a 4x4 kernel, as four matrix
  products (one per output phase), or for few output channels (G's RGB layer) as the
  shifted sums of one product: there the phases' patches (4 C values per output) would
  dwarf the 16 O products per input pixel, and the layer is bound by memory traffic, so
  it keeps the activations' dtype."""
  c, o = kernel.shape[2:]
  if 8 * o <= c:
    return _col2im_conv_transpose(x, kernel, precision)
  matrices = [kernel[a::2, b::2].reshape(4 * c, o) for a, b in _PHASES]
  outputs = _patch_products(_conv_transpose_patches, x, matrices, operand_dtype or x.dtype,
                            precision)
  return _interleave_phases(outputs).astype(x.dtype)


def _choose(impl: str, operands, im2col: Callable, plain: Callable):
  """im2col(*operands) or plain(*operands) as `impl` says; operands[1] is the HWIO kernel."""
  if impl not in IMPLS:
    raise ValueError(f"conv impl {impl!r} is not one of {', '.join(IMPLS)}")
  if impl == "im2col" or (impl == "im2col_rgb" and min(operands[1].shape[2:]) <= RGB_CHANNELS):
    return im2col(*operands)
  return lax.platform_dependent(*operands, cpu=im2col, default=plain)


def _with_operand_dtype(conv: Callable, lhs, rhs, operand_dtype):
  """conv(lhs, rhs, result_dtype), the lax form: with `operand_dtype` its operands in that
  dtype and summed in float32, the result back in lhs's dtype; with None as they are."""
  if operand_dtype is None:
    return conv(lhs, rhs, None)
  return conv(lhs.astype(operand_dtype), rhs.astype(operand_dtype), jnp.float32).astype(lhs.dtype)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None, impl: str = "auto",
                         operand_dtype=None):
  """lax.conv_general_dilated, with stride-2 4x4 SAME NHWC convolutions rewritten on CPU
  (and elsewhere as `impl` says, see IMPLS); pass as `nn.Conv(..., conv_general_dilated=...)`.
  `operand_dtype` (e.g. bfloat16): the products' operands in that dtype, summed in float32."""
  def conv(lhs, rhs, result_dtype):
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    batch_group_count, precision, result_dtype)

  def plain(lhs, rhs):
    if preferred_element_type is not None:  # the caller's choice of result type wins
      return conv(lhs, rhs, preferred_element_type)
    return _with_operand_dtype(conv, lhs, rhs, operand_dtype)

  if not (lhs.ndim == 4 and dimension_numbers is not None
          and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == _NHWC_SPEC
          and _is_stride2_k4(rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation)
          and lhs.shape[1] % 2 == 0 and lhs.shape[2] % 2 == 0
          and feature_group_count == 1 and batch_group_count == 1
          and preferred_element_type is None):
    return plain(lhs, rhs)
  return _choose(impl, (lhs, rhs), lambda x, k: _im2col_conv(x, k, precision, operand_dtype),
                 plain)


def conv_transpose_stride2(x: jax.Array, kernel: jax.Array, precision=None,
                           impl: str = "auto", operand_dtype=None) -> jax.Array:
  """lax.conv_transpose(x, kernel, (2, 2), 'SAME') in NHWC/HWIO for a 4x4 kernel, fast on
  CPU; `operand_dtype` as in `conv_general_dilated`."""
  def conv(x, kernel, result_dtype):
    return lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=NHWC,
                              precision=precision, preferred_element_type=result_dtype)

  def plain(x, kernel):
    return _with_operand_dtype(conv, x, kernel, operand_dtype)
  return _choose(impl, (x, kernel),
                 lambda x, k: _im2col_conv_transpose(x, k, precision, operand_dtype), plain)


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
  operand_dtype: Any = None  # the product's operand dtype (None: the computation dtype)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features),
                        jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv_transpose_stride2(x, kernel, self.precision, self.impl, self.operand_dtype)
    return y + bias if bias is not None else y

