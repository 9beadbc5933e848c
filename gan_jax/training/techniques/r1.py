"""The R1 penalty (Mescheder et al. 2018): gamma / 2 * mean ||grad_x D(x)||^2 on reals,
lazily (StyleGAN2) every `loss.r1_every` steps, scaled by that interval to keep its weight."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from gan_jax.errors import ConfigError
from gan_jax.training import losses
from gan_jax.training.techniques.base import Technique


@dataclasses.dataclass(frozen=True)
class R1(Technique):
  name = "r1"
  switch = "loss.r1_gamma"
  gamma: float
  every: int

  @classmethod
  def from_config(cls, config):
    loss = config.loss
    return cls(loss.r1_gamma, loss.r1_every) if loss.r1_gamma else None

  @staticmethod
  def check(config):
    loss = config.loss
    if loss.r1_gamma < 0:
      raise ConfigError(f"loss.r1_gamma={loss.r1_gamma} must be >= 0 (0 = off)")
    if loss.r1_every < 1:
      raise ConfigError(f"loss.r1_every={loss.r1_every} must be >= 1 (1 = every step)")
    if loss.r1_gamma > 0 and config.model.d_batch_norm:
      raise ConfigError("loss.r1_gamma > 0 penalises per-example gradients, which batch norm in "
                        "D breaks; set --config.model.d_batch_norm=False or "
                        "--config.loss.r1_gamma=0")

  @staticmethod
  def inert_options(options):
    if options.is_set("loss.r1_every") and not options["loss.r1_gamma"]:
      return [f"loss.r1_every={options['loss.r1_every']} has no effect with loss.r1_gamma=0 "
              "(R1 off)"]
    return []

  def d_penalty(self, d_round):
    _, dropout_key = jax.random.split(d_round.penalty_key)

    def r1():
      critic = lambda images: d_round.critic(images, dropout_key)  # noqa: E731
      return 0.5 * self.gamma * self.every * losses.r1_penalty(critic, d_round.real)

    if self.every == 1:
      return r1()
    return lax.cond(d_round.step % self.every == 0, r1, lambda: jnp.zeros((), jnp.float32))
