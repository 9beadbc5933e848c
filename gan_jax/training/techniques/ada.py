"""ADA (Karras et al. 2020, "Training generative adversarial networks with limited data").

Every image D sees is augmented by `augment.policy` with a probability p, per
image and per group of the policy, drawn for the global batch (so a run is the
same on 1 device and on 8). Every `augment.ada_interval` steps p moves up when
D's mean sign on the reals, r = E[sign(D(x) - b)], is above `augment.ada_target`
and down otherwise; b is the loss's decision boundary (losses.GANLoss.boundary:
0 for the BCE losses and hinge, 0.5 for least squares).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from gan_jax.errors import ConfigError
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training import augment, losses
from gan_jax.training.techniques.base import Technique, unused_without


def initial_ada() -> dict:
  """p starts at 0 (no augmentation); sign_sum adds up the interval's mean signs."""
  return {"p": jnp.zeros((), jnp.float32), "sign_sum": jnp.zeros((), jnp.float32)}


def ada_adjustment(batch_size: int, interval: int, kimg: float) -> float:
  """How far p moves per adjustment: p can go from 0 to 1 in `kimg` thousand real images."""
  return batch_size * interval / (kimg * 1000.0)


def ada_update(ada: dict, sign_mean: jax.Array, step: jax.Array, target: float,
               interval: int, adjustment: float) -> dict:
  """The controller after step `step`, whose mean sign of D on the reals was `sign_mean`.

  After every `interval` steps, r is the mean of their signs and p moves by
  sign(r - target) * adjustment, kept in [0, 1]; the sum then starts again.
  """
  sign_sum = ada["sign_sum"] + sign_mean
  due = (step + 1) % interval == 0
  r = sign_sum / interval
  moved = jnp.clip(ada["p"] + jnp.sign(r - target) * adjustment, 0.0, 1.0)
  return {"p": jnp.where(due, moved, ada["p"]).astype(jnp.float32),
          "sign_sum": jnp.where(due, 0.0, sign_sum).astype(jnp.float32)}


def mean_sign(logits: jax.Array, boundary: float = 0.0) -> jax.Array:
  """E[sign(D(x) - boundary)] over the global batch (every device gets the same value):
  +1 when D calls every image real by its loss's boundary, -1 when it calls none real."""
  return lax.pmean(jnp.mean(jnp.sign(logits.astype(jnp.float32) - boundary)), BATCH_AXIS)


@dataclasses.dataclass(frozen=True)
class ADA(Technique):
  name = "ada"
  switch = "augment.ada_target"
  policy: tuple[str, ...]
  target: float
  interval: int
  adjustment: float
  boundary: float   # the loss's decision boundary (losses.GANLoss.boundary)

  @classmethod
  def from_config(cls, config):
    ada = config.augment
    if not ada.ada_target:
      return None
    return cls(augment.parse_policy(ada.policy), ada.ada_target, ada.ada_interval,
               ada_adjustment(config.train.batch_size, ada.ada_interval, ada.ada_kimg),
               losses.get_loss(config.loss.name).boundary)

  @staticmethod
  def check(config):
    ada, loss_name = config.augment, config.loss.name
    if not 0.0 <= ada.ada_target < 1.0:
      raise ConfigError(f"augment.ada_target={ada.ada_target} must be in [0, 1) (0 = off, "
                        "e.g. 0.6)")
    if ada.ada_interval < 1:
      raise ConfigError(f"augment.ada_interval={ada.ada_interval} must be >= 1 (e.g. 4)")
    if ada.ada_kimg <= 0:
      raise ConfigError(f"augment.ada_kimg={ada.ada_kimg} must be > 0 (e.g. 500)")
    if ada.ada_target > 0 and not augment.parse_policy(ada.policy):
      raise ConfigError("augment.ada_target > 0 tunes how often augment.policy applies, which "
                        "is empty; set --config.augment.policy=color,translation,cutout (or "
                        "--config.augment.ada_target=0)")
    # The overfitting measure is the share of reals D calls real by its loss's boundary.
    if ada.ada_target > 0 and losses.get_loss(loss_name).boundary is None:
      raise ConfigError(f"augment.ada_target > 0 tunes p by how many reals D calls real, which "
                        f"the scores of loss.name={loss_name}'s critic do not say (they have no "
                        "decision boundary); set --config.augment.ada_target=0, or use "
                        "loss.name ns, minimax, lsgan or hinge")

  @staticmethod
  def inert_options(options):
    return unused_without(options, ("augment.ada_interval", "augment.ada_kimg"),
                          "augment.ada_target=0 (ADA off)", options["augment.ada_target"])

  def initial_state(self):
    return initial_ada()

  def view(self, images, keys, step, states):
    return augment.augment_rows(images, keys.shared, self.policy, states[self.name]["p"])

  def next_state(self, own, real_logits, fake_logits, step):
    r_step = mean_sign(real_logits, self.boundary)
    return ada_update(own, r_step, step, self.target, self.interval, self.adjustment)

  def metrics(self, own):
    return {"ada_p": own["p"]}
