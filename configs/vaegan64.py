"""VAE-GAN at 64 px (Larsen et al. 2016; docs/vaegan.md): DCGAN-sized E, G (decoder) and D.

E: four stride-2 convs (64 ... 512 channels; batch norm on the last three) then a dense
layer to the mean and log-variance of q(z|x); G and D are DCGAN's at 64 px (D's block
before the last, 8x8x256 as in the paper, is the learned similarity's feature layer).
Batch 64 and a 128-d latent as in the paper.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.resolution = 64
  config.data.crop = "celeba"
  config.model.name = "vaegan"
  config.model.latent_dim = 128
  config.model.width = 64
  config.train.batch_size = 64
  config.train.num_steps = 20_000
  return config
