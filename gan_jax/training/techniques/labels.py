"""Label smoothing and flipping: D's targets for reals below 1 (one-sided smoothing),
and each image's label flipped with a probability (seed 001's "swap labels")."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from gan_jax.errors import ConfigError
from gan_jax.training import losses
from gan_jax.training.techniques.base import Technique


def label_targets(key: jax.Array, batch_size: int, real_label: float = 1.0,
                  flip_prob: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """Per-example D targets (real, fake): real_label and 0, each flipped with prob. flip_prob.

  One-sided smoothing (real_label < 1) softens only the real target, so D is
  not pushed to output 0 on fakes less hard. A flipped real example is labelled
  fake (0) and a flipped fake one real (real_label).
  """
  real_flip, fake_flip = jax.random.bernoulli(key, flip_prob, (2, batch_size))
  real_target = jnp.where(real_flip, 0.0, real_label)
  fake_target = jnp.where(fake_flip, real_label, 0.0)
  return real_target, fake_target


@dataclasses.dataclass(frozen=True)
class Labels(Technique):
  name = "labels"
  switch = "loss.real_label/loss.flip_prob"
  real_label: float
  flip_prob: float

  @classmethod
  def from_config(cls, config):
    loss = config.loss
    return cls(loss.real_label, loss.flip_prob) if loss.real_label != 1.0 or loss.flip_prob \
        else None

  @staticmethod
  def check(config):
    loss = config.loss
    if not 0.0 < loss.real_label <= 1.0:
      raise ConfigError(f"loss.real_label={loss.real_label} must be in (0, 1] (e.g. 0.9 for "
                        "one-sided smoothing)")
    if not 0.0 <= loss.flip_prob < 0.5:
      raise ConfigError(f"loss.flip_prob={loss.flip_prob} must be in [0, 0.5) (e.g. 0.05)")
    if not losses.get_loss(loss.name).label_targets and (loss.real_label != 1.0
                                                          or loss.flip_prob != 0.0):
      raise ConfigError(f"label smoothing/flipping needs labels, which loss.name={loss.name} "
                        "does not have; set --config.loss.real_label=1.0 "
                        "--config.loss.flip_prob=0.0, or use loss.name ns, minimax or lsgan")

  def targets(self, label_key, batch_size):
    if self.flip_prob:
      return label_targets(label_key, batch_size, self.real_label, self.flip_prob)
    return self.real_label, 0.0
