"""Layers that more than one model family's discriminator can use.

`minibatch_std` (ProGAN, Karras et al. 2018; StyleGAN): one extra feature
channel holding how much the images of a small group differ, so D can see a
batch of near-identical fakes (mode collapse) that no single image reveals.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gan_jax.errors import ConfigError


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
