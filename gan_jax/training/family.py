"""The model families, one entry each in FAMILIES, chosen by `model.name`.

A family is its networks (a module of gan_jax/models with `check(config)` and
`build(config, axis_name)`), its bundle (the code half: networks, optimisers,
loss, techniques), its state (the data half; a checkpoint restores into the
class of its saved `model.name`), its initial state and its step, and the
technique hooks that step calls (techniques/base.py): a technique that needs
another hook is refused for the family. The trainer, the benchmark, the
checkpoint code and the trained-model loader ask here and nowhere else which
family they have (docs/architecture.md, "Adding a model family").
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Callable

import jax
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import dcgan, resnet
from gan_jax.models import vaegan as vaegan_networks
from gan_jax.training import state as gan_state
from gan_jax.training import step as gan_step
from gan_jax.training import techniques
from gan_jax.training import vaegan, vaegan_step
from gan_jax.training.gan import GAN


@dataclasses.dataclass(frozen=True)
class Family:
  """What a family is built and trained with."""
  networks: ModuleType              # check(config), build(config, axis_name) -> (G, D)
  bundle: type[GAN]                 # bundle.from_config(config, networks)
  state: type[gan_state.GANState]   # what create_state makes and a checkpoint restores into
  create_state: Callable            # (bundle, key(seed)) -> the state of step 0
  make_train_step: Callable         # bundle -> the pure (state, batch, key) -> (state, metrics)
  technique_hooks: frozenset[str] = techniques.HOOKS  # the hooks its step calls
  # An encoder (bundle.encode, bundle.reconstruct): training draws reconstructions of fixed
  # real faces beside the samples, and the trained model loads the encoder's weights.
  has_encoder: bool = False


FAMILIES = {
    "dcgan": Family(dcgan, GAN, gan_state.GANState, gan_state.create_state,
                    gan_step.make_train_step),
    "resnet": Family(resnet, GAN, gan_state.GANState, gan_state.create_state,
                     gan_step.make_train_step),
    "vaegan": Family(vaegan_networks, vaegan.VAEGAN, vaegan.VAEGANState, vaegan.create_state,
                     vaegan_step.make_train_step, technique_hooks=vaegan_step.TECHNIQUE_HOOKS,
                     has_encoder=True),
}


def of(config_or_name: ml_collections.ConfigDict | str) -> Family:
  """The family of a config's `model.name` (or of a name); ConfigError naming the known ones."""
  name = config_or_name if isinstance(config_or_name, str) else config_or_name.model.name
  if name not in FAMILIES:
    raise ConfigError(f"unknown model.name {name!r}; available: {', '.join(sorted(FAMILIES))}")
  return FAMILIES[name]


def check(config: ml_collections.ConfigDict) -> None:
  """ConfigError for model options the family cannot build, and for options of techniques
  that are wrong or that its step cannot run (config/checks.py calls this)."""
  family = of(config)
  family.networks.check(config)
  techniques.check(config, family.technique_hooks, config.model.name)


def build_networks(config: ml_collections.ConfigDict, axis_name: str | None = None):
  """(generator, discriminator) of `config.model.name`, batch norm synchronised over `axis_name`."""
  return of(config).networks.build(config, axis_name)


def counted_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config whose step XLA's cost analysis counts as the model's FLOPs: the family's
  plain maths (a family whose fast CPU forms compute fewer products, as the residual
  family's folded convolutions do, names its plain `model.conv_impl` in COUNTED_CONV_IMPL)."""
  counted_impl = getattr(of(config).networks, "COUNTED_CONV_IMPL", None)
  if counted_impl is None or config.model.conv_impl == counted_impl:
    return config
  counted = config.copy_and_resolve_references()
  counted.model.conv_impl = counted_impl
  return counted


def bundle(config: ml_collections.ConfigDict) -> GAN:
  """The bundle of `config.model.name`'s family, from a config the checks passed."""
  family = of(config)
  return family.bundle.from_config(config, family.networks)


def create_state(gan: GAN, key: jax.Array) -> gan_state.GANState:
  """The state of step 0 for `gan`'s family, initialised from `key` (= key(seed))."""
  return of(gan.model_name).create_state(gan, key)


def make_train_step(gan: GAN) -> Callable:
  """The family's pure (state, batch, key) -> (state, metrics) step with `gan` bound."""
  return of(gan.model_name).make_train_step(gan)


def state_class(model_name: str) -> type[gan_state.GANState]:
  """The state class a checkpoint of `model_name` restores into."""
  return of(model_name).state
