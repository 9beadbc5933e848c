"""WGAN-GP's gradient penalty (Gulrajani et al. 2017), with loss.name=wgan-gp:
mean (||grad_x D(x)|| - 1)^2 at random interpolates of real and fake images."""

from __future__ import annotations

import dataclasses

import jax

from gan_jax.errors import ConfigError
from gan_jax.training import losses
from gan_jax.training.techniques.base import Technique


@dataclasses.dataclass(frozen=True)
class GradientPenalty(Technique):
  name = "gradient_penalty"
  switch = "loss.name=wgan-gp"
  weight: float

  @classmethod
  def from_config(cls, config):
    loss = config.loss
    return cls(loss.gp_weight) if loss.name == "wgan-gp" and loss.gp_weight else None

  @staticmethod
  def check(config):
    loss = config.loss
    if loss.gp_weight < 0:
      raise ConfigError(f"loss.gp_weight={loss.gp_weight} must be >= 0")
    # A per-example gradient of D; batch norm mixes a batch's examples, so the
    # penalty would constrain the wrong function.
    if loss.name == "wgan-gp" and config.model.d_batch_norm:
      raise ConfigError("loss.name=wgan-gp penalises per-example gradients, which batch norm in "
                        "D breaks; set --config.model.d_batch_norm=False (or use "
                        "--config.model.d_spectral_norm=True with another loss)")

  @staticmethod
  def inert_options(options):
    if options.is_set("loss.gp_weight") and options["loss.name"] != "wgan-gp":
      return [f"loss.gp_weight={options['loss.gp_weight']} has no effect: only "
              f"loss.name=wgan-gp adds the gradient penalty (loss.name={options['loss.name']}); "
              "for a penalty with it use loss.r1_gamma"]
    return []

  def d_penalty(self, d_round):
    gp_key, dropout_key = jax.random.split(d_round.penalty_key)
    critic = lambda images: d_round.critic(images, dropout_key)  # noqa: E731
    return self.weight * losses.gradient_penalty(critic, d_round.real, d_round.fake, gp_key)
