"""FFHQ thumbnails at 64 px (seed 003): latent 64, BCE with one-sided label smoothing (D's
target for reals 0.9), batch norm in G and D; stops when a collapse detector fires, as the
seed stopped its runs by eye before they collapsed."""

from gan_jax.config import defaults


def get_config():
  config = defaults.get_config()
  config.data.resolution = 64
  config.data.crop = "center"
  config.model.latent_dim = 64
  config.model.width = 64
  config.train.batch_size = 128
  config.train.num_steps = 20_000
  config.loss.real_label = 0.9
  config.monitor.stop_on_collapse = True
  return config
