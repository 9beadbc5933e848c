"""LeCam regularisation (Tseng et al. 2021, "Regularizing generative adversarial networks
under limited data"): mean((D(x) - a_fake)^2) + mean((D(G(z)) - a_real)^2), a_* moving
averages of D's mean logit on reals and fakes (the paper's eq. 3, no clipping)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from gan_jax.errors import ConfigError
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training.techniques.base import Technique, unused_without


def initial_lecam() -> dict:
  return {"real": jnp.zeros((), jnp.float32), "fake": jnp.zeros((), jnp.float32)}


def lecam_penalty(real_logits: jax.Array, fake_logits: jax.Array, lecam: dict) -> jax.Array:
  """mean((D(x) - a_fake)^2) + mean((D(G(z)) - a_real)^2)."""
  real = real_logits.astype(jnp.float32)
  fake = fake_logits.astype(jnp.float32)
  return jnp.mean((real - lecam["fake"]) ** 2) + jnp.mean((fake - lecam["real"]) ** 2)


def lecam_update(lecam: dict, real_logits: jax.Array, fake_logits: jax.Array,
                 decay: float) -> dict:
  """The moving averages after a step: decay * a + (1 - decay) * D's mean logit (global batch)."""
  means = lax.pmean({"real": jnp.mean(real_logits.astype(jnp.float32)),
                     "fake": jnp.mean(fake_logits.astype(jnp.float32))}, BATCH_AXIS)
  return jax.tree.map(lambda a, m: decay * a + (1.0 - decay) * m, lecam, means)


@dataclasses.dataclass(frozen=True)
class LeCam(Technique):
  name = "lecam"
  switch = "loss.lecam_weight"
  weight: float
  decay: float

  @classmethod
  def from_config(cls, config):
    loss = config.loss
    return cls(loss.lecam_weight, loss.lecam_decay) if loss.lecam_weight else None

  @staticmethod
  def check(config):
    loss = config.loss
    if loss.lecam_weight < 0:
      raise ConfigError(f"loss.lecam_weight={loss.lecam_weight} must be >= 0 (0 = off)")
    if not 0.0 <= loss.lecam_decay < 1.0:
      raise ConfigError(f"loss.lecam_decay={loss.lecam_decay} must be in [0, 1) (e.g. 0.99)")

  @staticmethod
  def inert_options(options):
    return unused_without(options, ("loss.lecam_decay",), "loss.lecam_weight=0 (LeCam off)",
                          options["loss.lecam_weight"])

  def initial_state(self):
    return initial_lecam()

  def d_penalty(self, d_round):
    return self.weight * lecam_penalty(d_round.real_logits, d_round.fake_logits,
                                       d_round.states[self.name])

  def next_state(self, own, real_logits, fake_logits, step):
    return lecam_update(own, real_logits, fake_logits, self.decay)
