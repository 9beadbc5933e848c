"""The DCGAN recipe for small face sets at 64 px (docs/results.md), the best measured so far.

The celeba64 networks (DCGAN, latent 100, 64 filters, batch norm) and batch,
plus what a few thousand faces need: DiffAugment on everything D sees (so D
cannot memorise the training set), mirrored faces, an EMA of G's weights for
sampling, and bfloat16 compute for speed. docs/results.md gives its FID
against celeba64's at the same number of images seen, and the variants tried.
"""

from gan_jax.config import defaults


def get_config():
  config = defaults.get_config()
  config.data.resolution = 64
  config.data.crop = "celeba"
  config.data.hflip = True
  config.model.latent_dim = 100
  config.model.width = 64
  config.train.batch_size = 128
  config.train.dtype = "bfloat16"
  config.train.ema_decay = 0.999
  config.train.ema_rampup = True
  config.augment.policy = "color,translation,cutout"
  return config
