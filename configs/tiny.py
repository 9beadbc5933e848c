"""A few channels at 16 px: fast enough for tests and smoke runs on a CPU."""

from gan_jax.config import defaults


def get_config():
  config = defaults.get_config()
  config.data.resolution = 16
  config.data.crop = "center"
  config.model.latent_dim = 16
  config.model.width = 8
  config.train.batch_size = 32
  config.train.num_steps = 200
  config.num_sample_images = 16
  config.log_every = 20
  config.sample_every = 100
  config.checkpoint_every = 100
  return config
