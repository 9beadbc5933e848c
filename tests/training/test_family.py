"""training/family.py: one table, keyed by model.name, says how each model family is built
and trains, and which technique hooks its step runs."""

import dataclasses

import jax
import pytest

from conftest import tiny_config
from gan_jax.errors import ConfigError
from gan_jax.training import family
from gan_jax.training import state as gan_state
from gan_jax.training import step as gan_step
from gan_jax.training import vaegan, vaegan_step
from gan_jax.training.gan import GAN


def config_of(name):
  """A small config of model family `name` (a resnet takes only its own options)."""
  return tiny_config(base="resnet32" if name == "resnet" else "tiny", model__name=name)


def field_names(state_class):
  return {field.name for field in dataclasses.fields(state_class)}


def test_every_family_names_networks_that_check_and_build():
  for name, entry in family.FAMILIES.items():
    assert callable(entry.networks.check) and callable(entry.networks.build), name
    generator, discriminator = family.build_networks(config_of(name))
    assert (generator, discriminator) == entry.networks.build(config_of(name)), name


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
  assert gan.model_name == name and family.of(gan.model_name) is entry
  state = jax.eval_shape(lambda: family.create_state(gan, jax.random.key(0)))
  assert type(state) is state_class  # pylint: disable=unidiomatic-typecheck


def test_create_state_and_step_come_from_the_table():
  gan = family.bundle(config_of("vaegan"))
  entry = family.FAMILIES["vaegan"]
  assert (entry.create_state, entry.make_train_step) == (vaegan.create_state,
                                                         vaegan_step.make_train_step)
  for name in ("dcgan", "resnet"):
    assert (family.FAMILIES[name].create_state, family.FAMILIES[name].make_train_step) == (
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


def test_state_class_by_the_saved_model_name():
  assert family.state_class("dcgan") is family.state_class("resnet") is gan_state.GANState
  assert family.state_class("vaegan") is vaegan.VAEGANState
  assert field_names(vaegan.VAEGANState) > field_names(gan_state.GANState)
  with pytest.raises(ConfigError, match="unknown model.name 'stylegan'"):
    family.state_class("stylegan")


def test_a_family_refuses_the_techniques_its_step_does_not_run():
  config = config_of("vaegan")
  config.loss.lecam_weight = 0.1  # a penalty and a state: hooks the VAE-GAN step does not call
  with pytest.raises(ConfigError, match=r"^model.name=vaegan does not train with "
                                        r"loss.lecam_weight; use its default"):
    family.check(config)
  config.loss.lecam_weight, config.loss.real_label = 0.0, 0.9  # targets: its step calls them
  config.augment.policy, config.train.instance_noise = "color", 0.1  # views: likewise
  family.check(config)
  assert [t.name for t in family.bundle(config).techniques] == [
      "labels", "diffaugment", "instance_noise"]
