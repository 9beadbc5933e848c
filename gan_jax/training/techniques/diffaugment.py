"""DiffAugment (Zhao et al. 2020): every image D sees, real or fake, in the D and the G
update alike, goes through the differentiable augmentations of `augment.policy`."""

from __future__ import annotations

import dataclasses

from gan_jax.errors import ConfigError
from gan_jax.training import augment
from gan_jax.training.techniques.base import Technique


def policy_of(text: str, option: str) -> tuple[str, ...]:
  """The parsed policy; ConfigError naming `option` for an unknown augmentation."""
  try:
    return augment.parse_policy(text)
  except ValueError as error:
    raise ConfigError(str(error).replace("augment.policy", option, 1)) from None


@dataclasses.dataclass(frozen=True)
class DiffAugment(Technique):
  name = "diffaugment"
  switch = "augment.policy"
  policy: tuple[str, ...]

  @classmethod
  def from_config(cls, config):
    policy = augment.parse_policy(config.augment.policy)
    # With ADA the same policy applies with an adaptive probability (ada.py) instead.
    return cls(policy) if policy and not config.augment.ada_target else None

  @staticmethod
  def check(config):
    policy_of(config.augment.policy, "augment.policy")

  def view(self, images, keys, step, states):
    return augment.augment(images, keys.augment, self.policy)
