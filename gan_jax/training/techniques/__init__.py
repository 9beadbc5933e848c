"""Training techniques as self-contained terms of the step.

A technique (DiffAugment, ADA, instance noise, label smoothing and flipping,
balancing, the gradient penalties, LeCam, bCR) is one class in one file of
this folder. Its `from_config` reads its own options and returns None when they
turn it off, so a run holds only the techniques it uses and an option that is
off adds nothing to the compiled step. The class also owns its option checks
(`check`), its warnings for options the rest of the config leaves inert
(`inert_options`), its state in the train state (`initial_state`, moved on by
`next_state`), and the hooks the step calls (base.py says when each runs).

`TECHNIQUES` lists the built-in ones in the order the step applies them: D's
view of images goes through them in this order and their penalties add up in
it. `register` adds another (a test fixture does, docs/architecture.md shows
how), which then runs in every family whose step calls its hooks.
"""

from __future__ import annotations

import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.training.techniques.ada import ADA
from gan_jax.training.techniques.balance import Balance
from gan_jax.training.techniques.base import (HOOKS, DRound, Technique, ViewKeys, hooks_of,
                                              unused_without)
from gan_jax.training.techniques.bcr import BalancedConsistency
from gan_jax.training.techniques.diffaugment import DiffAugment
from gan_jax.training.techniques.gradient_penalty import GradientPenalty
from gan_jax.training.techniques.instance_noise import InstanceNoise
from gan_jax.training.techniques.labels import Labels
from gan_jax.training.techniques.lecam import LeCam
from gan_jax.training.techniques.r1 import R1

__all__ = ["HOOKS", "DRound", "Technique", "ViewKeys", "TECHNIQUES", "register", "unregister",
           "build", "check", "option_warnings", "hooks_of", "unused_without"]

TECHNIQUES: list[type[Technique]] = [
    Balance, Labels, DiffAugment, ADA, InstanceNoise, GradientPenalty, R1, LeCam,
    BalancedConsistency]


def register(technique: type[Technique]) -> type[Technique]:
  """Add `technique` after the built-in ones (usable as a class decorator)."""
  if any(known.name == technique.name for known in TECHNIQUES):
    raise ValueError(f"a technique named {technique.name!r} is registered already")
  TECHNIQUES.append(technique)
  return technique


def unregister(technique: type[Technique]) -> None:
  TECHNIQUES.remove(technique)


def build(config: ml_collections.ConfigDict) -> tuple[Technique, ...]:
  """The techniques `config` turns on, in the step's order."""
  built = (technique.from_config(config) for technique in TECHNIQUES)
  return tuple(technique for technique in built if technique is not None)


def check(config: ml_collections.ConfigDict, family_hooks: frozenset[str] = HOOKS,
          family_name: str = "") -> None:
  """Every technique's checks of its options; then ConfigError for a technique that is on
  but needs a hook the family's step (`family_hooks`) does not run."""
  for technique in TECHNIQUES:
    technique.check(config)
  for technique in build(config):
    missing = hooks_of(technique) - family_hooks
    if missing:
      raise ConfigError(f"model.name={family_name} does not train with {technique.switch}; "
                        "use its default (or model.name=dcgan)")


def option_warnings(options) -> list[str]:
  """Every technique's lines for options it leaves without effect (config/no_effect.py)."""
  return [line for technique in TECHNIQUES for line in technique.inert_options(options)]
