"""Model families, chosen by `model.name`: `models.build(config)` -> (generator, discriminator).

A family is one module here (see docs/architecture.md, "Adding a model family") with
  check(config)             raise errors.ConfigError for options it cannot build
  build(config, axis_name)  its (generator, discriminator) Flax modules
and one entry in FAMILIES. Models know nothing of training: the trainer passes
the name of the mapped axis over which batch norm averages its statistics.
"""

from __future__ import annotations

import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import dcgan, resnet, vaegan

FAMILIES = {"dcgan": dcgan, "resnet": resnet, "vaegan": vaegan}


def family(name: str):
  """The module of model family `name`; ConfigError naming the known ones otherwise."""
  if name not in FAMILIES:
    raise ConfigError(f"unknown model.name {name!r}; available: {', '.join(sorted(FAMILIES))}")
  return FAMILIES[name]


def check(config: ml_collections.ConfigDict) -> None:
  """Raise ConfigError for a model.name or model options its family cannot build."""
  family(config.model.name).check(config)


def counted_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config whose step XLA's cost analysis counts as the model's FLOPs: the family's
  plain maths (a family whose fast CPU forms compute fewer products, as the residual
  family's folded convolutions do, names its plain `model.conv_impl` in COUNTED_CONV_IMPL)."""
  counted_impl = getattr(family(config.model.name), "COUNTED_CONV_IMPL", None)
  if counted_impl is None or config.model.conv_impl == counted_impl:
    return config
  counted = config.copy_and_resolve_references()
  counted.model.conv_impl = counted_impl
  return counted


def build(config: ml_collections.ConfigDict, axis_name: str | None = None):
  """(generator, discriminator) of `config.model.name`, batch norm synchronised over `axis_name`."""
  return family(config.model.name).build(config, axis_name)
