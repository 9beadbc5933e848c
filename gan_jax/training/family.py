"""How each model family trains: one entry per `model.name` in FAMILIES.

A family that trains like the GAN (one G, one D) uses `GAN`, `GANState` and
`step.make_train_step`; one with another update order (model.name=vaegan) has
its own (docs/architecture.md, "Adding a model family", step 3). The training
loop, the benchmark, the checkpoint code and the trained-model loader ask here
and nowhere else which family they have.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import jax
import ml_collections

from gan_jax import models
from gan_jax.config.checks import validate_config
from gan_jax.training import state as gan_state
from gan_jax.training import step as gan_step
from gan_jax.training import vaegan, vaegan_step
from gan_jax.training.gan import GAN


@dataclasses.dataclass(frozen=True)
class TrainingFamily:
  """What a family trains with: its bundle, its state and its step."""
  bundle: type[GAN]                 # bundle.from_config(config): networks, optimisers, loss
  state: type[gan_state.GANState]   # what create_state makes and a checkpoint restores into
  create_state: Callable            # (bundle, key(seed)) -> the state of step 0
  make_train_step: Callable         # bundle -> the pure (state, batch, key) -> (state, metrics)
  # An encoder (bundle.encode, bundle.reconstruct): training draws reconstructions of fixed
  # real faces beside the samples, and the trained model loads the encoder's weights.
  has_encoder: bool = False


GAN_FAMILY = TrainingFamily(GAN, gan_state.GANState, gan_state.create_state,
                            gan_step.make_train_step)
FAMILIES = {
    "dcgan": GAN_FAMILY,
    "resnet": GAN_FAMILY,
    "vaegan": TrainingFamily(vaegan.VAEGAN, vaegan.VAEGANState, vaegan.create_state,
                             vaegan_step.make_train_step, has_encoder=True),
}


def of(config: ml_collections.ConfigDict) -> TrainingFamily:
  """The entry of `config.model.name`; ConfigError naming the known names otherwise."""
  models.family(config.model.name)  # the unknown-name error of the networks' own table
  return FAMILIES[config.model.name]


def of_bundle(gan: GAN) -> TrainingFamily:
  """The entry whose bundle class `gan` is (for code that holds a bundle, not its config)."""
  for entry in FAMILIES.values():
    if type(gan) is entry.bundle:  # pylint: disable=unidiomatic-typecheck
      return entry
  raise TypeError(f"{type(gan).__name__} is no family's bundle (training/family.py FAMILIES)")


def bundle(config: ml_collections.ConfigDict) -> GAN:
  """The bundle of `config.model.name`'s family (checks the config first)."""
  # The whole config first, so that its first problem is reported, whatever model.name is.
  validate_config(config)
  return of(config).bundle.from_config(config)


def create_state(gan: GAN, key: jax.Array) -> gan_state.GANState:
  """The state of step 0 for `gan`'s family, initialised from `key` (= key(seed))."""
  return of_bundle(gan).create_state(gan, key)


def make_train_step(gan: GAN) -> Callable:
  """The family's pure (state, batch, key) -> (state, metrics) step with `gan` bound."""
  return of_bundle(gan).make_train_step(gan)


def state_class(field_names: Iterable[str]) -> type:
  """The smallest family state with every field in `field_names` (GANState when none has).

  A saved tree (every field) or a trained model's partial state (some fields)
  names its family by its fields: a VAE-GAN's has the encoder's.
  """
  field_names = set(field_names)
  fitting = [entry.state for entry in FAMILIES.values()
             if field_names <= {field.name for field in dataclasses.fields(entry.state)}]
  if not fitting:  # the state's constructor then names the fields it does not know
    return gan_state.GANState
  return min(fitting, key=lambda state: len(dataclasses.fields(state)))
