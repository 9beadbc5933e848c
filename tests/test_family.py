"""training/family.py: one table, keyed by model.name, says how each model family trains."""

import dataclasses

import jax
import pytest

from configs import resnet32, tiny
from gan_jax import models
from gan_jax.errors import ConfigError
from gan_jax.training import family
from gan_jax.training import state as gan_state
from gan_jax.training import step as gan_step
from gan_jax.training import vaegan, vaegan_step
from gan_jax.training.gan import GAN


def config_of(name):
  """A small config of model family `name` (a resnet takes only its own options)."""
  config = resnet32.get_config() if name == "resnet" else tiny.get_config()
  config.model.name = name
  return config


def field_names(state_class):
  return {field.name for field in dataclasses.fields(state_class)}


def test_every_model_family_has_one_training_entry():
  # Adding a family to models.FAMILIES without saying how it trains fails here, not mid-run.
  assert set(family.FAMILIES) == set(models.FAMILIES)


@pytest.mark.parametrize("name, bundle_class, state_class, has_encoder", [
    ("dcgan", GAN, gan_state.GANState, False),
    ("resnet", GAN, gan_state.GANState, False),
    ("vaegan", vaegan.VAEGAN, vaegan.VAEGANState, True),
])
def test_the_entry_of_each_model_name(name, bundle_class, state_class, has_encoder):
  config = config_of(name)
  entry = family.of(config)
  assert (entry.bundle, entry.state, entry.has_encoder) == (bundle_class, state_class,
                                                             has_encoder)
  gan = family.bundle(config)
  assert type(gan) is bundle_class  # pylint: disable=unidiomatic-typecheck
  assert family.of_bundle(gan) is entry
  state = jax.eval_shape(lambda: family.create_state(gan, jax.random.key(0)))
  assert type(state) is state_class  # pylint: disable=unidiomatic-typecheck


def test_create_state_and_step_come_from_the_table():
  gan = family.bundle(config_of("vaegan"))
  entry = family.FAMILIES["vaegan"]
  assert (entry.create_state, entry.make_train_step) == (vaegan.create_state,
                                                         vaegan_step.make_train_step)
  assert (family.GAN_FAMILY.create_state, family.GAN_FAMILY.make_train_step) == (
      gan_state.create_state, gan_step.make_train_step)
  # The table's functions, not a check of the bundle's class: replacing the entry replaces them.
  calls = []
  replaced = dataclasses.replace(entry, make_train_step=lambda bundle: calls.append(bundle))
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(family.FAMILIES, "vaegan", replaced)
    family.make_train_step(gan)
  assert calls == [gan]


def test_unknown_model_name_is_the_networks_config_error():
  config = config_of("stylegan")
  with pytest.raises(ConfigError, match="unknown model.name 'stylegan'; available: dcgan, "
                                        "resnet, vaegan"):
    family.of(config)
  with pytest.raises(ConfigError, match="unknown model.name 'stylegan'"):
    family.bundle(config)


def test_state_class_by_the_fields_a_tree_has():
  gan_fields, vaegan_fields = field_names(gan_state.GANState), field_names(vaegan.VAEGANState)
  assert family.state_class(gan_fields) is gan_state.GANState  # a saved GAN
  assert family.state_class(vaegan_fields) is vaegan.VAEGANState  # a saved VAE-GAN
  # A trained model's partial state: G's fields alone, or with the encoder's.
  assert family.state_class({"g_params", "g_batch_stats"}) is gan_state.GANState
  assert family.state_class({"g_params", "e_params"}) is vaegan.VAEGANState
  assert family.state_class(set()) is gan_state.GANState
