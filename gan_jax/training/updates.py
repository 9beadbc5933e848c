"""The parts of a train step that do not depend on the model family.

A family's step (`step.py` for the GAN) is built from these: the per-device and
global random streams of an iteration, the optimiser update that is skipped
when it is not allowed or its gradients are not finite, and the EMA of weights.
All of them run inside the mapped step (axis `parallel.BATCH_AXIS`) or, where
they read no axis, anywhere.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from gan_jax.parallel import BATCH_AXIS
from gan_jax.training import optim


class NetState(NamedTuple):
  """One network's trained variables, as carried through the step's updates."""
  params: Any
  opt_state: optax.OptState
  batch_stats: Any


def device_key(step_key: jax.Array) -> jax.Array:
  """This device's key for the iteration: randomness that should differ per device
  (augmentation, dropout, labels) folds in the device index."""
  return jax.random.fold_in(step_key, lax.axis_index(BATCH_AXIS))


def global_latents(step_key: jax.Array, local_batch: int, latent_dim: int) -> jax.Array:
  """This device's rows of the step's latent batch, drawn for the global batch.

  Drawing z for the whole global batch and slicing it makes a run independent
  of the device count: 1 device and 8 devices see the same latents.
  """
  num_devices, index = lax.axis_size(BATCH_AXIS), lax.axis_index(BATCH_AXIS)
  z = jax.random.normal(step_key, (num_devices * local_batch, latent_dim), jnp.float32)
  return lax.dynamic_slice_in_dim(z, index * local_batch, local_batch)


def extra_latents(step_key: jax.Array, index, local_batch: int, latent_dim: int) -> jax.Array:
  """Latents for the iteration's update number `index` >= 1 (the first uses `step_key` itself).

  `device_key` folds 0..num_devices-1 into `step_key`, so these fold in
  num_devices + index: no stream is drawn twice. Unlike the first update's
  latents, these therefore depend on the device count.
  """
  index_key = jax.random.fold_in(step_key, lax.axis_size(BATCH_AXIS) + index)
  return global_latents(index_key, local_batch, latent_dim)


def all_finite(tree) -> jax.Array:
  """Whether every element of every leaf is finite (no NaN/Inf)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def keep_if(condition: jax.Array, new, old):
  """`new` where `condition` holds, else `old`, leaf by leaf: an update that can be
  switched off inside the compiled step, with no round trip to the host."""
  return jax.tree.map(lambda n, o: jnp.where(condition, n, o), new, old)


def guarded_update(optimizer: optax.GradientTransformation, schedule, step: jax.Array,
                   allowed: jax.Array, grads, net: NetState, new_batch_stats
                   ) -> tuple[NetState, jax.Array, jax.Array]:
  """One optimiser update, applied only if `allowed` and every gradient is finite.

  Otherwise the network keeps its params, optimiser state and batch statistics.
  `schedule` (or None: the optimiser's own) sets the learning rate from the
  training iteration `step`. Returns the network, and whether the update was
  applied and whether it was skipped for non-finite gradients (float 0/1 each).
  """
  finite = all_finite(grads)
  opt_state = net.opt_state
  if schedule is not None:  # the learning rate follows the training iteration
    opt_state = optim.set_learning_rate(opt_state, schedule(step))
  updates, opt_state = optimizer.update(grads, opt_state, net.params)
  updated = NetState(optax.apply_updates(net.params, updates), opt_state, new_batch_stats)
  applied = allowed & finite
  return (keep_if(applied, updated, net), applied.astype(jnp.float32),
          (allowed & ~finite).astype(jnp.float32))


def ema_update(ema_params, params, decay):
  """One step of the exponential moving average: decay * ema + (1 - decay) * params."""
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
