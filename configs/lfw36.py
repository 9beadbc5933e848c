"""LFW faces at 36 px (seed 005): G grows 9 -> 18 -> 36, D mirrors it."""

from gan_jax.config import defaults


def get_config():
  config = defaults.get_config()
  config.data.resolution = 36
  config.data.crop = "center"
  config.model.latent_dim = 100
  config.model.width = 64
  config.train.batch_size = 64
  return config
