"""Layers and build helpers that more than one model family uses.

`batch_norm` (the DCGAN reference code's settings, statistics averaged over the
trainer's mapped axis), `spectral_norm` (SNGAN: a layer's weights divided by
their top singular value), `precision` (the dtypes a config asks for) and

`minibatch_std`: (ProGAN, Karras et al. 2018; StyleGAN): one extra feature
channel holding how much the images of a small group differ, so D can see a
batch of near-identical fakes (mode collapse) that no single image reveals.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import operand_dtype


def bn_scale_init(key, shape, dtype=jnp.float32):
  """Batch-norm scale from N(1, 0.02), as in the reference DCGAN code."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def batch_norm(train: bool, dtype: Any, axis_name: str | None, name: str | None = None
               ) -> nn.BatchNorm:
  # momentum 0.9 == PyTorch's 0.1; in training, statistics are averaged over the
  # devices of the mapped axis `axis_name` (the trainer's data-parallel axis).
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      axis_name=axis_name if train else None, dtype=dtype,
                      scale_init=bn_scale_init,
                      name=name)


def spectral_norm(layer: nn.Module, x: jnp.ndarray, train: bool) -> jnp.ndarray:
  """`layer(x)` with its weights spectrally normalised; the power-iteration vector lives
  in 'batch_stats' and advances in training."""
  return nn.SpectralNorm(layer, name=f"{layer.name}_sn")(x, update_stats=train)


def precision(config: ml_collections.ConfigDict) -> tuple[Any, Any]:
  """(computation dtype, convolution operand dtype) of `config.train`."""
  return jnp.dtype(config.train.dtype), operand_dtype.resolve(config.train.conv_dtype)


def minibatch_std(x: jax.Array, group_size: int = 4, epsilon: float = 1e-8) -> jax.Array:
  """x (N, H, W, C) -> (N, H, W, C + 1): x and, per group, the mean over features of the
  standard deviation over the group's images, as a constant channel.

  Groups are consecutive images (0..g-1, g..2g-1, ...) of the batch D sees on
  this device, g = min(group_size, N): when every device's batch is a multiple
  of g, the groups, and so D's outputs, do not depend on the device count.
  Real and fake images go through D in separate calls, so a group is all real
  or all fake. The statistic is computed in float32 whatever x's dtype.
  """
  n, height, width, _ = x.shape
  group = min(group_size, n)
  if n % group:
    raise ConfigError(f"model.d_minibatch_std_group={group_size} must divide the images D sees "
                      f"at once on a device ({n}); choose a divisor of the per-device batch "
                      "(train.batch_size / devices)")
  grouped = x.astype(jnp.float32).reshape(n // group, group, height, width, -1)
  std = jnp.sqrt(jnp.var(grouped, axis=1) + epsilon)     # (N/g, H, W, C): over the group
  stat = jnp.mean(std, axis=(1, 2, 3))                   # (N/g,): over features and pixels
  channel = jnp.broadcast_to(stat[:, None, None, None, None], (n // group, group, height, width, 1))
  return jnp.concatenate([x, channel.reshape(n, height, width, 1).astype(x.dtype)], axis=-1)
