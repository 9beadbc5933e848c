"""Regularisers of D for small data sets: adaptive augmentation, LeCam and balanced consistency.

With a few thousand faces D soon tells the training images from everything
else, and G's gradient stops meaning anything. Each technique here is an option
(docs/options.md), off by default:

  ADA   (Karras et al. 2020, "Training generative adversarial networks with
        limited data"): every image D sees is augmented (augment.policy) with a
        probability p, per image and per group of the policy. Every
        augment.ada_interval steps p moves up when D's sign on the reals,
        r = E[sign(D(x) - b)], is above augment.ada_target, and down otherwise;
        b is the loss's decision boundary (`losses.GANLoss.boundary`: 0 for
        the BCE losses and hinge, 0.5 for least squares).
  LeCam (Tseng et al. 2021, "Regularizing generative adversarial networks
        under limited data"): mean((D(x) - a_fake)^2) + mean((D(G(z)) - a_real)^2),
        a_* moving averages of D's mean logit on reals and fakes.
  bCR   (Zhao et al. 2020, "Improved consistency regularization for GANs"):
        mean((D(x) - D(T(x)))^2) on reals and on fakes, T an augmentation.

The functions are pure; the step (`step.py`) calls them inside the mapped step.
Their random augmentations are drawn for the global batch and sliced, like the
latents, so a run with them is the same on 1 device and on 8.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gan_jax import streams
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training import augment


class Inputs(NamedTuple):
  """What one D or G update's losses read of the regularisers (None: that one is off)."""
  view_key: jax.Array | None  # this update's key of ADA's and bCR's augmentations (global)
  ada_p: jax.Array | None     # ADA's augmentation probability
  lecam: dict | None          # {'real', 'fake'}: moving averages of D's mean logits


def step_inputs(ada: dict | None, lecam: dict | None, step_key: jax.Array, uses_views: bool
                ) -> Inputs:
  """The regularisers' inputs of a step, from the state's `ada` and `lecam` and the step's key."""
  view_key = streams.augment_view_key(step_key) if uses_views else None
  return Inputs(view_key, None if ada is None else ada["p"], lecam)


def for_update(inputs: Inputs, index) -> Inputs:
  """The inputs of the step's update number `index` (its own augmentations)."""
  if inputs.view_key is None:
    return inputs
  return inputs._replace(view_key=jax.random.fold_in(inputs.view_key, index))


# --- augmentations drawn for the global batch ---

def global_uniforms(key: jax.Array, local_batch: int, width: int) -> jax.Array:
  """This device's rows of (global batch, width) uniforms in [0, 1) drawn from `key`."""
  num_devices, index = lax.axis_size(BATCH_AXIS), lax.axis_index(BATCH_AXIS)
  u = jax.random.uniform(key, (num_devices * local_batch, width))
  return lax.dynamic_slice_in_dim(u, index * local_batch, local_batch)


def augment_rows(images: jax.Array, key: jax.Array, policy: tuple[str, ...],
                 p: jax.Array | None = None) -> jax.Array:
  """`augment.apply` to this device's images with its rows of the global batch's parameters
  (and ADA gates)."""
  width = augment.num_uniforms(policy, gated=p is not None)
  return augment.apply(images, global_uniforms(key, images.shape[0], width), policy, p)


# --- ADA ---

def initial_ada() -> dict:
  """p starts at 0 (no augmentation); sign_sum adds up the interval's mean signs."""
  return {"p": jnp.zeros((), jnp.float32), "sign_sum": jnp.zeros((), jnp.float32)}


def ada_adjustment(batch_size: int, interval: int, kimg: float) -> float:
  """How far p moves per adjustment: p can go from 0 to 1 in `kimg` thousand real images."""
  return batch_size * interval / (kimg * 1000.0)


def ada_update(ada: dict, sign_mean: jax.Array, step: jax.Array, target: float,
               interval: int, adjustment: float) -> dict:
  """The controller after step `step`, whose mean sign of D on the reals was `sign_mean`.

  After every `interval` steps, r is the mean of their signs and p moves by
  sign(r - target) * adjustment, kept in [0, 1]; the sum then starts again.
  """
  sign_sum = ada["sign_sum"] + sign_mean
  due = (step + 1) % interval == 0
  r = sign_sum / interval
  moved = jnp.clip(ada["p"] + jnp.sign(r - target) * adjustment, 0.0, 1.0)
  return {"p": jnp.where(due, moved, ada["p"]).astype(jnp.float32),
          "sign_sum": jnp.where(due, 0.0, sign_sum).astype(jnp.float32)}


def mean_sign(logits: jax.Array, boundary: float = 0.0) -> jax.Array:
  """E[sign(D(x) - boundary)] over the global batch (every device gets the same value):
  +1 when D calls every image real by its loss's boundary, -1 when it calls none real."""
  return lax.pmean(jnp.mean(jnp.sign(logits.astype(jnp.float32) - boundary)), BATCH_AXIS)


# --- LeCam ---

def initial_lecam() -> dict:
  return {"real": jnp.zeros((), jnp.float32), "fake": jnp.zeros((), jnp.float32)}


def lecam_penalty(real_logits: jax.Array, fake_logits: jax.Array, lecam: dict) -> jax.Array:
  """mean((D(x) - a_fake)^2) + mean((D(G(z)) - a_real)^2) (the paper's eq. 3, no clipping)."""
  real = real_logits.astype(jnp.float32)
  fake = fake_logits.astype(jnp.float32)
  return jnp.mean((real - lecam["fake"]) ** 2) + jnp.mean((fake - lecam["real"]) ** 2)


def lecam_update(lecam: dict, real_logits: jax.Array, fake_logits: jax.Array,
                 decay: float) -> dict:
  """The moving averages after a step: decay * a + (1 - decay) * D's mean logit (global batch)."""
  means = lax.pmean({"real": jnp.mean(real_logits.astype(jnp.float32)),
                     "fake": jnp.mean(fake_logits.astype(jnp.float32))}, BATCH_AXIS)
  return jax.tree.map(lambda a, m: decay * a + (1.0 - decay) * m, lecam, means)


# --- bCR ---

def consistency_penalty(logits: jax.Array, augmented_logits: jax.Array) -> jax.Array:
  """mean((D(x) - D(T(x)))^2): D should not care about the augmentation T."""
  return jnp.mean((logits.astype(jnp.float32) - augmented_logits.astype(jnp.float32)) ** 2)
