"""A residual GAN at 32 px (SNGAN's CIFAR networks, narrowed to train on a CPU).

G: dense z -> 4x4, three residual up-blocks, BN -> ReLU -> 3x3 conv -> tanh; D: four
residual blocks (three halve the image) with spectral norm on every layer, no batch
norm, then a sum over positions and a dense logit (gan_jax/models/resnet.py). Every
block has model.width channels; SNGAN used 256 (G) and 128 (D), 64 keeps a step on a
2-core CPU within a few times a DCGAN-32 step (docs/benchmarks.md).

Training follows SAGAN/BigGAN for one D update per G update: hinge loss, Adam with
beta1 0 and beta2 0.9, and the two-time-scale rates 1e-4 (G) / 4e-4 (D). SNGAN's
equal 2e-4 rates assume 5 D updates per G update (5x the D cost of a step); the
faster D rate stands in for them. Plus what small face sets need (as
faces32_diffaug.py): DiffAugment on everything D sees, mirrored faces, an EMA of G.
"""

from gan_jax.config import defaults


def get_config():
  config = defaults.get_config()
  config.data.resolution = 32
  config.data.crop = "celeba"
  config.data.hflip = True
  config.model.name = "resnet"
  config.model.latent_dim = 128
  config.model.width = 64
  config.model.d_batch_norm = False   # the resnet D has none ...
  config.model.d_spectral_norm = True  # ... and spectral norm on every layer
  config.loss.name = "hinge"
  config.optim.g_lr = 1e-4
  config.optim.d_lr = 4e-4
  config.optim.b1 = 0.0
  config.optim.b2 = 0.9
  config.train.batch_size = 64
  config.train.num_steps = 50_000
  config.train.ema_decay = 0.999
  config.train.ema_rampup = True
  config.augment.policy = "color,translation,cutout"
  return config
