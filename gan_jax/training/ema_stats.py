"""Batch-norm statistics of the EMA generator, re-estimated before sampling.

The EMA of G's weights is another network than the live G, so the live G's
running statistics (`state.g_batch_stats`) normalise it with the activation
statistics of other weights. With `train.ema_batch_stats=recompute`,
`GAN.sampling_variables` gives the EMA weights statistics of their own:
`recompute` runs the EMA generator in training mode (every batch-norm layer
normalised by the batch's own statistics, as in a train step) on
`num_batches` fixed batches of latents and sets each layer's mean and
variance to the plain average over those batches of its per-batch mean and
variance ("precise BN"): no momentum, nothing of the live statistics.

The latents come from their own stream (`streams.ema_stats_key`), the same
for every run and call, so sampling twice gives the same images. Nothing is
stored in the state: the statistics are a function of the EMA weights, and
the callers that sample many batches (`explore.loader.TrainedGAN`, hence the
periodic FID and `evaluate run`) compute them once per state.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from gan_jax import streams

# train.ema_batch_stats: "live" samples the EMA weights with G's running
# statistics (the behaviour before the option existed), "recompute" with their own.
MODES = ("live", "recompute")

PyTree = Any


def stats_latents(num_batches: int, batch_size: int, latent_dim: int) -> jax.Array:
  """The fixed latents (num_batches, batch_size, latent_dim) the statistics are measured on."""
  return jax.random.normal(streams.ema_stats_key(), (num_batches, batch_size, latent_dim))


def _uses_batch_statistics(module: nn.BatchNorm, args: tuple, kwargs: dict) -> bool:
  """Whether this BatchNorm call normalises with the batch's statistics (training mode)."""
  use_running_average = kwargs.get("use_running_average", args[1] if len(args) > 1 else None)
  return not nn.merge_param("use_running_average", module.use_running_average,
                            use_running_average)


def batch_moments(generator: nn.Module, params: PyTree, z: jax.Array) -> dict[tuple, jax.Array]:
  """{(layer path..., 'mean' | 'var'): value}: every batch-norm layer's batch statistics on z.

  G runs in training mode, so each layer sees activations normalised by the
  batch's own statistics upstream; mean and (biased) variance are taken over
  every axis but the features, in float32, as flax.linen.BatchNorm takes them.
  `generator` must have no mapped axis (`clone(axis_name=None)`).
  """
  moments = {}

  def record(next_fun, args, kwargs, context):
    module = context.module
    if (isinstance(module, nn.BatchNorm) and context.method_name == "__call__"
        and _uses_batch_statistics(module, args, kwargs)):
      x = jnp.asarray(args[0], jnp.float32)
      feature_axes = {axis % x.ndim for axis in
                      (module.axis if isinstance(module.axis, tuple) else (module.axis,))}
      reduced = tuple(axis for axis in range(x.ndim) if axis not in feature_axes)
      moments[tuple(module.path) + ("mean",)] = jnp.mean(x, axis=reduced)
      moments[tuple(module.path) + ("var",)] = jnp.var(x, axis=reduced)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    # The running statistics this pass updates are thrown away; only `moments` count.
    generator.apply({"params": params}, z, train=True, mutable=["batch_stats"])
  return moments


def recompute(generator: nn.Module, params: PyTree, batch_stats: PyTree,
              latents: jax.Array) -> PyTree:
  """`batch_stats` with every batch-norm mean and variance re-estimated for `params`.

  latents: (num_batches, batch_size, latent_dim); each statistic is the mean
  over the batches of its per-batch value (`batch_moments`). Entries of
  `batch_stats` that are not batch-norm statistics are kept.
  """
  unmapped = generator.clone(axis_name=None)  # runs outside the train step's mapped axis
  per_batch = jax.lax.map(lambda z: batch_moments(unmapped, params, z), latents)
  averaged = {path: jnp.mean(values, axis=0) for path, values in per_batch.items()}
  flat = traverse_util.flatten_dict(batch_stats) if batch_stats else {}
  missing = sorted(set(flat) - set(averaged))
  if any(path[-1] in ("mean", "var") for path in missing):
    raise ValueError(f"batch norm statistics {missing} were not measured: the generator's "
                     "batch-norm layers did not run in training mode")
  return traverse_util.unflatten_dict({**flat, **averaged})
