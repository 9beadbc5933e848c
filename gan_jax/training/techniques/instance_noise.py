"""Instance noise: Gaussian noise on every image D sees, its std annealed linearly to 0."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from gan_jax.errors import ConfigError
from gan_jax.training.techniques.base import Technique


@dataclasses.dataclass(frozen=True)
class InstanceNoise(Technique):
  name = "instance_noise"
  switch = "train.instance_noise"
  std: float     # at step 0
  steps: int     # the std reaches 0 here

  @classmethod
  def from_config(cls, config):
    train = config.train
    return cls(train.instance_noise, train.instance_noise_steps or train.num_steps) \
        if train.instance_noise else None

  @staticmethod
  def check(config):
    train = config.train
    if train.instance_noise < 0 or train.instance_noise_steps < 0:
      raise ConfigError(f"train.instance_noise={train.instance_noise} and "
                        f"train.instance_noise_steps={train.instance_noise_steps} must be >= 0")

  @staticmethod
  def inert_options(options):
    if options.is_set("train.instance_noise_steps") and not options["train.instance_noise"]:
      return [f"train.instance_noise_steps={options['train.instance_noise_steps']} has no effect "
              "with train.instance_noise=0 (no noise to anneal)"]
    return []

  def std_at(self, step: jax.Array) -> jax.Array:
    return self.std * jnp.maximum(0.0, 1.0 - step / self.steps)

  def view(self, images, keys, step, states):
    return images + self.std_at(step) * jax.random.normal(keys.noise, images.shape)
