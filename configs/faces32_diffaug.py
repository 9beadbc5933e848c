"""The DCGAN recipe for a few thousand faces at 32 px on a CPU budget (docs/results.md).

faces32_best until 2026-12-02; faces32_best adds a slower EMA and LeCam to it.

celeba32's networks (DCGAN: 4 transposed convs in G, 4 convs in D to 2 x 2), plus
what a small face set needs: DiffAugment on everything D sees (so D cannot
memorise the training faces), mirrored faces, and an EMA of G's weights for
sampling. Batch 32, not celeba32's 128: on the 2-core CPU a step of 32 costs a
quarter of one of 128 (91% of the images per second), and at the same images seen
four times the updates learn faster (held-out FID at 145,920 images: 81.4 at
batch 32, 103.3 at 64, 124.9 at 128). num_steps is the 45-minute CPU budget of
docs/results.md's comparison with celeba32. The EMA generator samples with
batch statistics of its own weights (held-out FID 43.2 against 45.8 with G's
running ones at the 45-minute step); a learning rate decayed linearly to 0 over
the budget did worse (49.7 against 43.2, D pulled ahead as the rate fell).
"""

from gan_jax.config import files

celeba32 = files.base(__file__, "celeba32")  # beside this file, else configs/


def get_config():
  config = celeba32.get_config()
  config.data.hflip = True
  config.train.batch_size = 32
  config.train.num_steps = 20_520     # 656,640 images: 45 minutes at 242 img/s (2-core CPU)
  config.train.ema_decay = 0.999
  config.train.ema_rampup = True
  config.train.ema_batch_stats = "recompute"
  config.augment.policy = "color,translation,cutout"
  return config
