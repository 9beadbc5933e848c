"""FFHQ thumbnails at 64 px (seed 003): latent 64, BCE, batch norm in G and D."""

from configs import default


def get_config():
  config = default.get_config()
  config.data.resolution = 64
  config.data.crop = "center"
  config.model.latent_dim = 64
  config.model.width = 64
  config.train.batch_size = 128
  config.train.num_steps = 20_000
  return config
