"""The whole GAN training state as one pytree of arrays.

Everything that changes during training lives here, so that the train step is a
pure function of (state, batch, key) and a checkpoint is one save of this tree.
The models and optimisers themselves (code, not data) live in `gan.GAN`.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from gan_jax import streams

PyTree = Any


@flax.struct.dataclass
class GANState:
  step: jax.Array             # int32 scalar: completed training iterations
  g_params: PyTree
  g_batch_stats: PyTree       # {} when G has no batch norm
  g_opt_state: optax.OptState
  d_params: PyTree
  d_batch_stats: PyTree
  d_opt_state: optax.OptState
  ema_g_params: PyTree        # exponential moving average of g_params (None: train.ema_decay=0)
  key: jax.Array              # typed PRNG key of the run; each step folds in its index
  # {technique name: its state} for the techniques that keep one (ADA's p, LeCam's
  # averages); a checkpoint stores each under its name beside the fields above.
  techniques: PyTree


def create_state(gan, key: jax.Array) -> GANState:
  """Initialise both networks and optimisers from `key` (a typed PRNG key)."""
  g_key, d_key, run_key = streams.init_keys(key)
  z = jnp.zeros((1, gan.latent_dim), jnp.float32)
  x = jnp.zeros((1, gan.resolution, gan.resolution, 3), jnp.float32)
  # Initialise in inference mode: no batch axis exists outside the mapped step.
  g_vars = gan.generator.init(g_key, z, train=False)
  d_vars = gan.discriminator.init(d_key, x, train=False)
  g_params, d_params = g_vars["params"], d_vars["params"]
  return GANState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_params,
      g_batch_stats=g_vars.get("batch_stats", {}),
      g_opt_state=gan.g_optimizer.init(g_params),
      d_params=d_params,
      d_batch_stats=d_vars.get("batch_stats", {}),
      d_opt_state=gan.d_optimizer.init(d_params),
      # The EMA starts at G's initial weights; copies, so no buffer is donated twice.
      ema_g_params=jax.tree.map(jnp.copy, g_params) if gan.ema_decay else None,
      key=run_key,
      techniques={name: own for name, own in
                  ((technique.name, technique.initial_state()) for technique in gan.techniques)
                  if own is not None},
  )


def param_count(params: PyTree) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))
