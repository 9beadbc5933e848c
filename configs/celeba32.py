"""CelebA at 32 px (seed 002): D of 4 convs (batch norm on the last 3) then dense;
G of 4 transposed convs (projection + 3) with batch norm on the first 3."""

from gan_jax.config import defaults


def get_config():
  config = defaults.get_config()
  config.data.resolution = 32
  config.data.crop = "celeba"
  config.model.latent_dim = 100
  config.model.width = 64
  config.model.d_final_size = 2      # 32 -> 16 -> 8 -> 4 -> 2: four convs
  config.train.batch_size = 128
  config.train.num_steps = 31_660    # 20 epochs of CelebA's 202,599 faces at batch 128
  return config
