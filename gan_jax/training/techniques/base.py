"""What a technique is: the hooks the step calls, and what they are given.

The GAN step (training/step.py) calls, for every technique the run holds:
  view(images, keys, step, states)   D's view of any images it is shown, in order
  targets(label_key, batch_size)     D's loss targets (real, fake) instead of (1, 0)
  d_penalty(round)                   a term added to D's loss, or a tuple of terms added in
                                     order (a DRound says what they read)
  choose_updates(d_loss, g_loss)     (train D?, train G?) this step
  next_state(own, real_logits, fake_logits, step)
                                     its state after the step, from the first D update's logits
  metrics(own)                       scalars to log from its new state
A technique overrides only the hooks it needs; a family whose step calls fewer
(the VAE-GAN's calls `view` and `targets`) refuses the techniques that need others.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, NamedTuple

import jax
import ml_collections

# Every hook a step may call; a family lists the ones its step calls (training/family.py).
HOOKS = frozenset({"view", "targets", "d_penalty", "choose_updates", "next_state"})


class ViewKeys(NamedTuple):
  """The keys of one view of a batch: this device's own, and one drawn for the global batch."""
  augment: jax.Array       # this device's draws of a fixed-probability augmentation
  noise: jax.Array         # this device's instance noise
  shared: jax.Array | None  # the update's global-batch key (ADA); None where a step has none


class DRound(NamedTuple):
  """One D update as D's penalty terms and the techniques' state updates read it."""
  critic: Callable[[jax.Array, jax.Array], jax.Array]  # (images, dropout key) -> D's logits,
                                                       # D's statistics left as they are
  real: jax.Array           # D's view of the reals (after every `view`)
  fake: jax.Array
  real_logits: jax.Array
  fake_logits: jax.Array
  dropout_keys: tuple[jax.Array, jax.Array]  # of the real and of the fake forward
  penalty_key: jax.Array    # for the gradient penalties' draws
  shared_keys: tuple[jax.Array, jax.Array] | tuple[None, None]  # global-batch keys for more
                                                                # views of the reals, the fakes
  step: jax.Array
  states: dict[str, Any]    # the techniques' states at the start of the step


class Technique:
  """A training technique; subclasses are frozen dataclasses of their settings."""
  name: ClassVar[str]       # its key in the train state's `techniques` and in checkpoints
  switch: ClassVar[str]     # the option(s) that turn it on, as messages name them

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "Technique | None":
    """The technique `config` asks for; None when its options leave it off."""
    raise NotImplementedError

  @staticmethod
  def check(config: ml_collections.ConfigDict) -> None:
    """Raise errors.ConfigError for its options out of range or wrong with the rest."""

  @staticmethod
  def inert_options(options) -> list[str]:
    """One line per option of its that `options` (config/no_effect.py) set to no effect."""
    return []

  def initial_state(self) -> Any:
    """Its state at step 0 (a dict of arrays), or None when it keeps none."""
    return None

  def view(self, images: jax.Array, keys: ViewKeys, step: jax.Array,
           states: dict[str, Any]) -> jax.Array:
    return images

  def targets(self, label_key: jax.Array, batch_size: int):
    return None

  def d_penalty(self, d_round: DRound) -> jax.Array | tuple[jax.Array, ...] | None:
    return None

  def choose_updates(self, d_loss: jax.Array, g_loss: jax.Array):
    return None

  def next_state(self, own: Any, real_logits: jax.Array, fake_logits: jax.Array,
                 step: jax.Array) -> Any:
    return own

  def metrics(self, own: Any) -> dict[str, jax.Array]:
    return {}


def hooks_of(technique: Technique) -> frozenset[str]:
  """The hooks `technique` overrides (the ones it needs a step to call)."""
  return frozenset(hook for hook in HOOKS
                   if getattr(type(technique), hook) is not getattr(Technique, hook))


def unused_without(options, names, switch: str, is_on: bool) -> list[str]:
  """The inert-option line for `names` that do nothing unless `switch` (described) is on."""
  names = options.set_among(names)
  if names and not is_on:
    return [f"{', '.join(names)} {'has' if len(names) == 1 else 'have'} no effect with {switch}"]
  return []
