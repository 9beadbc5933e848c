"""Defaults for every option; the other configs start from here and change a few.

Any option can be overridden on the command line, e.g.
`--config.train.batch_size=256 --config.optim.d_lr=1e-4`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.path = ""              # a folder of face images or a prepared uint8 .npy
  config.data.resolution = 64
  config.data.crop = "center"        # center | celeba | none
  config.data.limit = 0              # use only the first N images (0 = all)

  config.model = ml_collections.ConfigDict()
  config.model.name = "dcgan"
  config.model.latent_dim = 100
  config.model.width = 64            # G's last / D's first conv channels
  config.model.g_width = 0           # 0 = model.width
  config.model.d_width = 0           # 0 = model.width
  config.model.g_batch_norm = True
  config.model.d_batch_norm = True
  config.model.d_final_size = 0      # D flattens at this side; 0 = G's start size (4, or 9 at 36 px)
  config.model.d_dropout = 0.0

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128      # global batch, split over all devices
  config.train.num_steps = 10_000
  config.train.dtype = "float32"     # computation dtype: float32 | bfloat16

  config.optim = ml_collections.ConfigDict()
  config.optim.g_lr = 2e-4
  config.optim.d_lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999

  config.loss = ml_collections.ConfigDict()
  config.loss.name = "ns"            # non-saturating BCE

  config.parallel = "shard_map"      # shard_map | pmap
  config.num_sample_images = 64      # fixed-noise grid size
  config.log_every = 50
  config.sample_every = 500
  config.checkpoint_every = 1000
  return config
