"""Balanced consistency regularisation (bCR; Zhao et al. 2020, "Improved consistency
regularization for GANs"): mean((D(x) - D(T(x)))^2) on reals and on fakes, T an
augmentation drawn for the global batch. D's extra forwards reuse their images'
dropout keys (only T differs) and leave its batch statistics as they are."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from gan_jax.errors import ConfigError
from gan_jax.training import augment
from gan_jax.training.techniques.base import Technique, unused_without
from gan_jax.training.techniques.diffaugment import policy_of


def consistency_penalty(logits: jax.Array, augmented_logits: jax.Array) -> jax.Array:
  """mean((D(x) - D(T(x)))^2): D should not care about the augmentation T."""
  return jnp.mean((logits.astype(jnp.float32) - augmented_logits.astype(jnp.float32)) ** 2)


@dataclasses.dataclass(frozen=True)
class BalancedConsistency(Technique):
  name = "bcr"
  switch = "loss.bcr_real/loss.bcr_fake"
  real_weight: float
  fake_weight: float
  policy: tuple[str, ...]

  @classmethod
  def from_config(cls, config):
    loss = config.loss
    if not (loss.bcr_real or loss.bcr_fake):
      return None
    return cls(loss.bcr_real, loss.bcr_fake, augment.parse_policy(loss.bcr_augment))

  @staticmethod
  def check(config):
    loss = config.loss
    policy = policy_of(loss.bcr_augment, "loss.bcr_augment")
    if loss.bcr_real < 0 or loss.bcr_fake < 0:
      raise ConfigError(f"loss.bcr_real={loss.bcr_real} and loss.bcr_fake={loss.bcr_fake} must "
                        "be >= 0 (0 = off)")
    if (loss.bcr_real > 0 or loss.bcr_fake > 0) and not policy:
      raise ConfigError("loss.bcr_real/bcr_fake > 0 need an augmentation in loss.bcr_augment; "
                        "set --config.loss.bcr_augment=translation")

  @staticmethod
  def inert_options(options):
    return unused_without(options, ("loss.bcr_augment",),
                          "loss.bcr_real=0 and loss.bcr_fake=0 (bCR off)",
                          options["loss.bcr_real"] or options["loss.bcr_fake"])

  def d_penalty(self, d_round):
    terms = []
    for weight, images, logits, dropout_key, view_key in (
        (self.real_weight, d_round.real, d_round.real_logits, d_round.dropout_keys[0],
         d_round.shared_keys[0]),
        (self.fake_weight, d_round.fake, d_round.fake_logits, d_round.dropout_keys[1],
         d_round.shared_keys[1])):
      if weight:
        augmented = augment.augment_rows(images, view_key, self.policy)
        terms.append(weight * consistency_penalty(logits, d_round.critic(augmented, dropout_key)))
    return tuple(terms)  # added to D's loss one by one, in this order
