"""The layers of the style-based family (models/stylegan2.py): equalised learning rate,
weight-(de)modulated convolution, the activation and the smooth 2x upsampling.

Equalised learning rate (Karras et al. 2018): a layer's weights are stored N(0, 1 / lr_mul)
and used times lr_mul / sqrt(fan_in), so every layer learns at the same pace under Adam
whatever its fan-in, and a learning-rate multiplier (the mapping network's) slows it.
Modulation and demodulation act on the activations, not the weights (`modulated_conv`).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models import fused_conv

ACTIVATION_GAIN = math.sqrt(2.0)  # leaky ReLU's gain: keeps unit variance through a layer
SHORTCUT_GAIN = math.sqrt(0.5)    # residual sum of two unit-variance branches


def lrelu(x: jax.Array) -> jax.Array:
  """Leaky ReLU 0.2 times sqrt(2) (the paper's activation, variance preserving)."""
  return nn.leaky_relu(x, 0.2) * jnp.asarray(ACTIVATION_GAIN, x.dtype)


def normalize_2nd_moment(z: jax.Array, epsilon: float = 1e-8) -> jax.Array:
  """z / sqrt(mean(z^2) over its features): every latent on the same sphere."""
  return z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + epsilon)


def upsample2x_smooth(x: jax.Array) -> jax.Array:
  """2x upsampling of NHWC maps by the [1, 3, 3, 1] / 4 filter (= bilinear with half-pixel
  centres), edges replicated: the skip architecture's RGB upsampling."""
  def along(x, axis):
    size = x.shape[axis]
    take = lambda start, stop: jax.lax.slice_in_dim(x, start, stop, axis=axis)
    previous = jnp.concatenate([take(0, 1), take(0, size - 1)], axis=axis)
    following = jnp.concatenate([take(1, size), take(size - 1, size)], axis=axis)
    even, odd = 0.25 * previous + 0.75 * x, 0.75 * x + 0.25 * following
    stacked = jnp.stack([even, odd], axis=axis + 1)
    shape = list(x.shape)
    shape[axis] *= 2
    return stacked.reshape(shape)
  return along(along(x, 1), 2)


def modulated_conv(x: jax.Array, kernel: jax.Array, styles: jax.Array, demodulate: bool = True,
                   resample: str | None = None, impl: str = "auto",
                   operand_dtype: Any = None) -> jax.Array:
  """StyleGAN2's modulated convolution of x (N, H, W, I) with kernel (k, k, I, O) and per-image
  styles (N, I), SAME padding, [2x nearest upsampling first with resample="upsample_before"].

  Computed by scaling the input and the output rather than the kernel: x * s -> conv with
  the shared kernel -> times d (N, O), d = 1 / sqrt(sum over taps and inputs of (s_i w)^2 +
  1e-8) with demodulation (1 without). The per-image scales commute with the convolution
  (and with nearest upsampling), so this equals convolving each image with its own
  modulated, demodulated kernel. Styles and d are computed in float32; the result has x's
  dtype.
  """
  styles = styles.astype(jnp.float32)
  y = fused_conv.conv(x * styles[:, None, None, :].astype(x.dtype), kernel.astype(x.dtype), None,
                      resample, impl, None, operand_dtype)
  if demodulate:
    # sum_{taps, i} (s_i w_tio)^2 = sum_i s_i^2 sum_taps w_tio^2: one (N, I) x (I, O) product.
    tap_energy = jnp.sum(jnp.square(kernel.astype(jnp.float32)), axis=(0, 1))
    coefficients = jax.lax.rsqrt(jnp.square(styles) @ tap_energy + 1e-8)
    y = y * coefficients[:, None, None, :].astype(y.dtype)
  return y.astype(x.dtype)


class EqualDense(nn.Module):
  """Dense layer with the equalised learning rate and a learning-rate multiplier.

  Parameters 'kernel' (in, features), initialised N(0, 1 / lr_multiplier), and 'bias'
  (features,), initialised bias_init / lr_multiplier; used as kernel * lr_multiplier /
  sqrt(in) and bias * lr_multiplier, so the effective layer starts as N(0, 1 / in)
  weights and a bias of bias_init whatever the multiplier, and the gradient of a raw
  parameter is lr_multiplier times what an unscaled layer's would be.
  """
  features: int
  lr_multiplier: float = 1.0
  bias_init: float = 0.0
  activation: bool = False  # leaky ReLU 0.2 times sqrt(2) after the bias

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.normal(stddev=1.0 / self.lr_multiplier),
                        (fan_in, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.constant(self.bias_init / self.lr_multiplier),
                      (self.features,), jnp.float32)
    weight = kernel * (self.lr_multiplier / math.sqrt(fan_in))
    y = x.astype(jnp.float32) @ weight + bias * self.lr_multiplier
    return lrelu(y) if self.activation else y


class EqualConv(nn.Module):
  """SAME k x k convolution with the equalised learning rate (kernel N(0, 1) used times
  1 / sqrt(k k in)), [then 2x2 average pooling with resample="pool_after"], computed by
  fused_conv (`impl`, `operand_dtype`); optional bias and activation after the pooling."""
  features: int
  size: int = 3
  use_bias: bool = True
  activation: bool = True
  resample: str | None = None
  dtype: Any = jnp.float32
  operand_dtype: Any = None
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = self.size * self.size * x.shape[-1]
    kernel = self.param("kernel", nn.initializers.normal(stddev=1.0),
                        (self.size, self.size, x.shape[-1], self.features), jnp.float32)
    kernel = (kernel / math.sqrt(fan_in)).astype(self.dtype)
    bias = None
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
      bias = bias.astype(self.dtype)
    y = fused_conv.conv(x.astype(self.dtype), kernel, bias, self.resample, self.impl, None,
                        self.operand_dtype)
    return lrelu(y) if self.activation else y
