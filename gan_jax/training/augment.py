"""Differentiable augmentation of the images D sees (DiffAugment, Zhao et al. 2020).

With few training images D memorises them and G stops learning. Augmenting
both the real and the generated images that D sees, with operations G's
gradient can pass through, lets D train on many more views without G learning
the augmentations. Images are (N, H, W, C) in [-1, 1]; every example gets its
own random parameters, drawn from the key, so the same key gives the same
augmentation.

Policies: 'color' (brightness, saturation, contrast), 'translation' (shift by
up to 1/8 of the side, zero padding) and 'cutout' (zero a square of half the
side), combined as a comma-separated string such as "color,translation,cutout".
Each operation takes the images and its per-image parameters as uniforms in
[0, 1) of shape (N, k), so it can be tested on chosen values.

Adaptive augmentation (ADA, Karras et al. 2020) applies each group of the
policy to each image only with a probability p, which the ADA technique
(techniques/ada.py) moves during training: `apply(..., p=p)` reads one more uniform per group as
its gate.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from gan_jax.parallel import BATCH_AXIS


def brightness(images: jax.Array, u: jax.Array) -> jax.Array:
  """Add one shift in [-0.5, 0.5) to each image."""
  return images + (u[:, 0] - 0.5)[:, None, None, None]


def saturation(images: jax.Array, u: jax.Array) -> jax.Array:
  """Scale each image's colour away from its grey by a factor in [0, 2)."""
  grey = jnp.mean(images, axis=-1, keepdims=True)
  return grey + (images - grey) * (2.0 * u[:, 0])[:, None, None, None]


def contrast(images: jax.Array, u: jax.Array) -> jax.Array:
  """Scale each image away from its mean by a factor in [0.5, 1.5)."""
  mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True)
  return mean + (images - mean) * (u[:, 0] + 0.5)[:, None, None, None]


def translation(images: jax.Array, u: jax.Array, ratio: float = 0.125) -> jax.Array:
  """Shift each image by up to `ratio` of its size in each direction; uncovered pixels are 0."""
  n, h, w, c = images.shape
  max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
  max_shift = jnp.array([max_dy, max_dx])
  # Uniform integer shifts in [-max_shift, max_shift].
  shifts = jnp.floor(u * (2 * max_shift + 1)).astype(jnp.int32) - max_shift
  padded = jnp.pad(images, ((0, 0), (max_dy, max_dy), (max_dx, max_dx), (0, 0)))

  def shift_one(image, shift):
    return lax.dynamic_slice(image, (max_dy - shift[0], max_dx - shift[1], 0), (h, w, c))

  return jax.vmap(shift_one)(padded, shifts)


def cutout(images: jax.Array, u: jax.Array, ratio: float = 0.5) -> jax.Array:
  """Zero one square of `ratio` times the image side per image, centred anywhere (clipped)."""
  n, h, w, _ = images.shape
  size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
  # Centres uniform over [0, h] x [0, w], so the square may hang over an edge.
  top = jnp.floor(u[:, :1] * (h + 1)).astype(jnp.int32) - size_y // 2
  left = jnp.floor(u[:, 1:] * (w + 1)).astype(jnp.int32) - size_x // 2
  rows, cols = jnp.arange(h)[None, :], jnp.arange(w)[None, :]
  in_rows = (rows >= top) & (rows < top + size_y)                 # (n, h)
  in_cols = (cols >= left) & (cols < left + size_x)               # (n, w)
  keep = ~(in_rows[:, :, None] & in_cols[:, None, :])             # (n, h, w)
  return images * keep[..., None].astype(images.dtype)


# Each operation reads its per-image parameters from this many uniforms in [0, 1).
Operation = tuple[Callable[[jax.Array, jax.Array], jax.Array], int]
AUGMENTATIONS: dict[str, tuple[Operation, ...]] = {
    "color": ((brightness, 1), (saturation, 1), (contrast, 1)),
    "translation": ((translation, 2),),
    "cutout": ((cutout, 2),),
}


def parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
  """'color,translation' -> ('color', 'translation'); '' -> (); unknown names fail."""
  names = policy.split(",") if isinstance(policy, str) else list(policy)
  names = tuple(name.strip() for name in names if name.strip())
  unknown = [name for name in names if name not in AUGMENTATIONS]
  if unknown:
    raise ValueError(f"unknown augment.policy entries {unknown}; use a comma-separated subset of "
                     f"{', '.join(AUGMENTATIONS)} (e.g. --config.augment.policy=color,translation)")
  return names


def num_uniforms(policy: str | Sequence[str], gated: bool = False) -> int:
  """Uniforms per image that `apply` reads: the operations' parameters, then one gate per group."""
  names = parse_policy(policy)
  return (sum(size for name in names for _, size in AUGMENTATIONS[name])
          + (len(names) if gated else 0))


def apply(images: jax.Array, u: jax.Array, policy: str | Sequence[str],
          p: jax.Array | None = None) -> jax.Array:
  """Apply every augmentation of `policy` in order, with per-image parameters `u`.

  `u` is (N, num_uniforms(policy, gated=p is not None)) in [0, 1). With a
  probability `p` (ADA), each group of `policy` ("color", ...) changes an image
  only where that image's gate uniform, in the last columns of `u`, is below p.
  """
  names = parse_policy(policy)
  offset, gates = 0, num_uniforms(names)
  for group, name in enumerate(names):
    augmented = images
    for op, size in AUGMENTATIONS[name]:
      augmented = op(augmented, u[:, offset:offset + size])
      offset += size
    if p is None:
      images = augmented
    else:
      gate = u[:, gates + group] < p
      images = jnp.where(gate[:, None, None, None], augmented, images)
  return images


def augment(images: jax.Array, key: jax.Array, policy: str | Sequence[str],
            p: jax.Array | None = None) -> jax.Array:
  """`apply` with per-image parameters (and gates, with `p`) drawn from `key`."""
  if not parse_policy(policy):
    return images
  # One draw for all parameters: each random op is costly to compile on a CPU.
  u = jax.random.uniform(key, (images.shape[0], num_uniforms(policy, gated=p is not None)))
  return apply(images, u, policy, p)


# --- augmentations drawn for the global batch (ADA, bCR) ---

def global_uniforms(key: jax.Array, local_batch: int, width: int) -> jax.Array:
  """This device's rows of (global batch, width) uniforms in [0, 1) drawn from `key`: the
  same draws on 1 device and on 8, as the latents are."""
  num_devices, index = lax.axis_size(BATCH_AXIS), lax.axis_index(BATCH_AXIS)
  u = jax.random.uniform(key, (num_devices * local_batch, width))
  return lax.dynamic_slice_in_dim(u, index * local_batch, local_batch)


def augment_rows(images: jax.Array, key: jax.Array, policy: tuple[str, ...],
                 p: jax.Array | None = None) -> jax.Array:
  """`apply` to this device's images with its rows of the global batch's parameters (and
  gates, with `p`); runs inside the mapped step."""
  width = num_uniforms(policy, gated=p is not None)
  return apply(images, global_uniforms(key, images.shape[0], width), policy, p)
