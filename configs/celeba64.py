"""CelebA 64 px with the DCGAN paper's settings (latent 100, 64 filters, Adam 2e-4, b1 0.5)."""

from gan_jax.config import defaults


def get_config():
  config = defaults.get_config()
  config.data.resolution = 64
  config.data.crop = "celeba"
  config.model.latent_dim = 100
  config.model.width = 64
  config.train.batch_size = 128
  return config
