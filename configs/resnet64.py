"""A residual GAN at 64 px with SNGAN's / BigGAN's 64 px widths: for a GPU.

G: dense z -> 4x4 x 1024, four residual up-blocks (1024 -> 512 -> 256 -> 128 -> 64
channels), BN -> ReLU -> 3x3 conv -> tanh; D: five residual blocks (64 -> 128 ->
256 -> 512 -> 1024 channels, four halve the image) with spectral norm on every
layer, no batch norm, then a sum over positions and a dense logit
(gan_jax/models/resnet.py). The training recipe is configs/resnet32.py's: hinge
loss, Adam beta1 0 / beta2 0.9 at 1e-4 (G) / 4e-4 (D) for one D update per G
update (SAGAN, BigGAN), DiffAugment, mirrored faces, an EMA of G, bfloat16.
"""

from gan_jax.config import files

resnet32 = files.base(__file__, "resnet32")  # beside this file, else configs/


def get_config():
  config = resnet32.get_config()
  config.data.resolution = 64
  config.model.width = 64
  config.train.dtype = "bfloat16"
  config.train.num_steps = 100_000
  return config
