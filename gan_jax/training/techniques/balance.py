"""Balancing (seed 004's rule): when D's and G's losses differ by at least a margin,
train only the weaker network (the one with the higher loss) this step; otherwise both."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from gan_jax.errors import ConfigError
from gan_jax.training.techniques.base import Technique


@dataclasses.dataclass(frozen=True)
class Balance(Technique):
  name = "balance"
  switch = "train.balance_margin"
  margin: float

  @classmethod
  def from_config(cls, config):
    return cls(config.train.balance_margin) if config.train.balance_margin else None

  @staticmethod
  def check(config):
    margin = config.train.balance_margin
    if margin < 0:
      raise ConfigError(f"train.balance_margin={margin} must be >= 0 (0 = off)")

  def choose_updates(self, d_loss, g_loss):
    close = jnp.abs(g_loss - d_loss) < self.margin
    return close | (d_loss > g_loss), close | (g_loss > d_loss)
