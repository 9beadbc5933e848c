"""VAE-GAN at 64 px (Larsen et al. 2016; docs/vaegan.md): DCGAN-sized E, G (decoder) and D.

E: four stride-2 convs (64 ... 512 channels; batch norm on the last three) then a dense
layer to the mean and log-variance of q(z|x); G and D are DCGAN's at 64 px (D's block
before the last, 8x8x256 as in the paper, is the learned similarity's feature layer).
Batch 64 and a 128-d latent as in the paper.
"""

from gan_jax.config import files

vaegan32 = files.base(__file__, "vaegan32")  # beside this file, else configs/


def get_config():
  config = vaegan32.get_config()  # the same recipe; only the size differs
  config.data.resolution = 64
  return config
