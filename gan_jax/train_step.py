"""One GAN training iteration as a pure per-device function.

`train_step(state, batch, key) -> (state, metrics)` does one discriminator
update, then one generator update. It runs under a mapped axis named 'batch'
(shard_map, pmap, or a 1-device mesh); gradients and batch-norm statistics are
averaged over that axis, so every device ends the step with the same state.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax import lax

from gan_jax import losses
from gan_jax.models import Discriminator, Generator, build_models
from gan_jax.models.dcgan import BATCH_AXIS
from gan_jax.state import GANState


@dataclasses.dataclass(frozen=True)
class GAN:
  """The code half of a GAN: models, optimisers and loss (the data half is GANState)."""
  generator: Generator
  discriminator: Discriminator
  g_optimizer: optax.GradientTransformation
  d_optimizer: optax.GradientTransformation
  loss: losses.GANLoss
  latent_dim: int
  resolution: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "GAN":
    generator, discriminator = build_models(config)
    optim = config.optim
    return cls(
        generator=generator,
        discriminator=discriminator,
        g_optimizer=optax.adam(optim.g_lr, b1=optim.b1, b2=optim.b2),
        d_optimizer=optax.adam(optim.d_lr, b1=optim.b1, b2=optim.b2),
        loss=losses.get_loss(config.loss.name),
        latent_dim=config.model.latent_dim,
        resolution=config.data.resolution,
    )

  def sample(self, state: GANState, z: jax.Array) -> jax.Array:
    """Images in [-1, 1] from latents z, with G in inference mode (running batch stats)."""
    params = state.ema_g_params if state.ema_g_params is not None else state.g_params
    return self.generator.apply({"params": params, "batch_stats": state.g_batch_stats}, z,
                                train=False)


def to_float_images(batch: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1]; float batches are taken as already scaled."""
  if batch.dtype == jnp.uint8:
    return batch.astype(jnp.float32) / 127.5 - 1.0
  return batch.astype(jnp.float32)


def train_step(gan: GAN, state: GANState, batch: jax.Array, key: jax.Array
               ) -> tuple[GANState, dict[str, jax.Array]]:
  """One D update then one G update on this device's share of the batch."""
  # Every step and every device draws different noise, all from the one key.
  key = jax.random.fold_in(jax.random.fold_in(key, state.step), lax.axis_index(BATCH_AXIS))
  z_key, d_dropout_key, g_dropout_key = jax.random.split(key, 3)
  real = to_float_images(batch)
  z = jax.random.normal(z_key, (real.shape[0], gan.latent_dim), jnp.float32)
  G, D = gan.generator, gan.discriminator

  def generate(g_params):
    fake, updates = G.apply({"params": g_params, "batch_stats": state.g_batch_stats}, z,
                            train=True, mutable=["batch_stats"])
    return fake, updates.get("batch_stats", {})

  # One G forward serves both updates: the D step reads `fake`, the G step pulls
  # D's gradient back through `g_pullback` instead of running G again.
  fake, g_pullback, g_batch_stats = jax.vjp(generate, state.g_params, has_aux=True)

  def discriminate(d_params, d_batch_stats, images, dropout_key):
    logits, updates = D.apply({"params": d_params, "batch_stats": d_batch_stats}, images,
                              train=True, mutable=["batch_stats"], rngs={"dropout": dropout_key})
    return logits, updates.get("batch_stats", {})

  # --- discriminator update ---
  def d_loss_fn(d_params):
    real_key, fake_key = jax.random.split(d_dropout_key)
    real_logits, d_stats = discriminate(d_params, state.d_batch_stats, real, real_key)
    fake_logits, d_stats = discriminate(d_params, d_stats, lax.stop_gradient(fake), fake_key)
    return gan.loss.d_loss(real_logits, fake_logits), (d_stats, real_logits, fake_logits)

  (d_loss, (d_batch_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
      d_loss_fn, has_aux=True)(state.d_params)
  d_grads = lax.pmean(d_grads, BATCH_AXIS)
  d_updates, d_opt_state = gan.d_optimizer.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  # --- generator update, against the updated discriminator ---
  def g_loss_fn(fake_images):
    logits, d_stats = discriminate(d_params, d_batch_stats, fake_images, g_dropout_key)
    return gan.loss.g_loss(logits), d_stats

  (g_loss, d_batch_stats), fake_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = g_pullback(fake_grads)
  g_grads = lax.pmean(g_grads, BATCH_AXIS)
  g_updates, g_opt_state = gan.g_optimizer.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

  new_state = state.replace(
      step=state.step + 1,
      g_params=g_params, g_batch_stats=g_batch_stats, g_opt_state=g_opt_state,
      d_params=d_params, d_batch_stats=d_batch_stats, d_opt_state=d_opt_state)
  metrics = {
      "d_loss": d_loss,
      "g_loss": g_loss,
      "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
      "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
  }
  return new_state, lax.pmean(metrics, BATCH_AXIS)


def make_train_step(gan: GAN):
  """`train_step` with the GAN bound: the (state, batch, key) function to map."""
  return functools.partial(train_step, gan)
