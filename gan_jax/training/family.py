"""Which bundle, state and step a run trains with, by its model family.

A family that trains like the GAN (one G, one D) uses `GAN`, `GANState` and
`step.train_step`; one with another update order (model.name=vaegan) has its
own three (docs/architecture.md, "Adding a model family", step 3). The
training loop, the checkpoint code and the trained-model loader ask here.
"""

from __future__ import annotations

import jax
import ml_collections

from gan_jax.training import state as gan_state
from gan_jax.training import step as gan_step
from gan_jax.training import vaegan, vaegan_step
from gan_jax.training.gan import GAN


def bundle(config: ml_collections.ConfigDict) -> GAN:
  """The bundle of `config.model.name`'s family (checks the config first)."""
  if config.model.name == "vaegan":
    return vaegan.VAEGAN.from_config(config)
  return GAN.from_config(config)


def create_state(gan: GAN, key: jax.Array) -> gan_state.GANState:
  """The state of step 0 for `gan`'s family, initialised from `key` (= key(seed))."""
  if isinstance(gan, vaegan.VAEGAN):
    return vaegan.create_state(gan, key)
  return gan_state.create_state(gan, key)


def make_train_step(gan: GAN):
  """The family's pure (state, batch, key) -> (state, metrics) step with `gan` bound."""
  if isinstance(gan, vaegan.VAEGAN):
    return vaegan_step.make_train_step(gan)
  return gan_step.make_train_step(gan)


def state_class(field_names) -> type:
  """The state class whose fields a saved tree has (a VAE-GAN's has the encoder's)."""
  if set(vaegan.ENCODER_FIELDS) <= set(field_names):
    return vaegan.VAEGANState
  return gan_state.GANState
