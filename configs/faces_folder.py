"""A folder of a few hundred face photos on a CPU (seed 004): 32 px, batch norm in G only,
and "train the weaker net": when the losses differ by 1 or more only the one behind is updated."""

from gan_jax.config import defaults


def get_config():
  config = defaults.get_config()
  config.data.resolution = 32
  config.data.crop = "center"
  config.model.latent_dim = 100
  config.model.width = 32
  config.model.g_batch_norm = True
  config.model.d_batch_norm = False
  config.train.batch_size = 32
  config.train.num_steps = 3_000
  config.train.balance_margin = 1.0
  config.log_every = 20
  config.sample_every = 200
  return config
