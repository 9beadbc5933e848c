"""Every option with its default: the one table of them, inside the package.

The project's configs (configs/*.py) and a user's own start from
`get_config()` and change a few options. A config loaded from a file
(`--config`, `gan_jax.config.files`) or from a checkpoint is filled from here
once (`fill`, `with_defaults`): options added after it was written take their
defaults, which is how the code behaved before they existed, so the rest of
the package reads every option directly, with no fallback of its own.

Any option can be overridden on the command line, e.g.
`--config.train.batch_size=256 --config.optim.d_lr=1e-4`.
"""

from __future__ import annotations

from typing import Any

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Every option at its default: a new ConfigDict each call."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.path = ""              # image folder (prepared once, cached), prepared dir, or uint8 .npy
  config.data.resolution = 64
  config.data.crop = "center"        # center | celeba | none
  config.data.limit = 0              # use only the first N images (0 = all)
  config.data.holdout = 0            # set the last N images aside, never trained on, for evaluation
  config.data.pipeline = "auto"      # auto | device | tfdata | numpy (see gan_jax/data/pipeline.py)
  config.data.device_budget_mb = 4096  # auto: keep the data on each device if it fits this
  config.data.hflip = False          # mirror a seeded half of each batch
  config.data.cache_dir = ""         # prepared folders; "" = ${GAN_JAX_CACHE:-~/.cache/gan_jax}/prepared

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
  config.model.d_spectral_norm = False  # spectral norm on every D layer (SNGAN)
  config.model.e_width = 0           # vaegan: the encoder's first conv channels (0 = width)
  config.model.feature_block = 2     # vaegan: reconstructions compared in D's k-th last conv block
  config.model.d_minibatch_std = False  # D sees the std over groups of images (ProGAN/StyleGAN)
  config.model.d_minibatch_std_group = 4  # images per minibatch-std group
  config.model.conv_impl = "auto"    # auto: stride-2 convs as matrix products on CPU, cuDNN on
                                     # GPU; im2col: matrix products everywhere; im2col_rgb: also
                                     # on GPU for G's last and D's first layer (faster there,
                                     # docs/benchmarks.md)

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128      # global batch, split over all devices
  config.train.num_steps = 10_000
  config.train.dtype = "float32"     # computation dtype: float32 | bfloat16
  config.train.conv_dtype = "auto"   # convolutions' operands: auto = bfloat16 (summed in float32)
                                     # on CPUs with AVX512-BF16 or AMX, else as ""; "" =
                                     # train.dtype; float32 | bfloat16 (models/operand_dtype.py)
  config.train.d_steps = 1           # D updates per iteration (each on fresh fakes)
  config.train.g_steps = 1           # G updates per iteration
  config.train.balance_margin = 0.0  # >0: when |L_G - L_D| >= margin update only the weaker net
  config.train.ema_decay = 0.0       # EMA of G's weights for sampling (0 = off, e.g. 0.999)
  config.train.ema_rampup = False    # decay = min(ema_decay, (1 + step) / (10 + step))
  config.train.ema_batch_stats = "live"  # batch-norm statistics the EMA samples with: live (G's
                                     # running ones) | recompute (its own, re-estimated on fixed
                                     # latents before sampling; gan_jax/training/ema_stats.py)
  config.train.ema_stats_batches = 8  # recompute: batches of fixed latents ...
  config.train.ema_stats_batch_size = 0  # ... of this many latents (0 = train.batch_size)
  config.train.instance_noise = 0.0  # std of Gaussian noise on D's inputs, annealed to 0
  config.train.instance_noise_steps = 0  # anneal over this many steps (0 = train.num_steps)
  config.train.deterministic = True  # XLA deterministic GPU ops: same seed -> same weights

  config.optim = ml_collections.ConfigDict()
  config.optim.g_lr = 2e-4
  config.optim.d_lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  config.optim.schedule = "constant"  # constant | linear | cosine (decay to 0 at train.num_steps)
  config.optim.warmup_steps = 0      # linear warm-up from 0 before the schedule

  config.loss = ml_collections.ConfigDict()
  config.loss.name = "ns"            # ns | minimax | lsgan | hinge | wgan-gp
  config.loss.real_label = 1.0       # D's target for reals; 0.9 = one-sided label smoothing
  config.loss.flip_prob = 0.0        # probability of flipping each D label
  config.loss.gp_weight = 10.0       # WGAN-GP gradient-penalty weight (loss.name=wgan-gp only)
  config.loss.r1_gamma = 0.0         # R1 penalty on reals (0 = off)
  config.loss.r1_every = 1           # lazy R1: apply every N steps, scaled by N
  config.loss.lecam_weight = 0.0     # LeCam regularisation of D (0 = off, e.g. 0.3)
  config.loss.lecam_decay = 0.99     # LeCam: decay of the moving averages of D's logits
  config.loss.bcr_real = 0.0         # balanced consistency (bCR) on reals (0 = off)
  config.loss.bcr_fake = 0.0         # bCR on fakes (0 = off)
  config.loss.bcr_augment = "translation"  # bCR's augmentation T (augment.policy names)
  config.loss.kl_weight = 0.01       # model.name=vaegan: weight of E's KL term (per-image sum)
  config.loss.recon_weight = 3.0     # model.name=vaegan: gamma, G's weight of the feature-space
                                     # reconstruction error against its GAN loss

  config.augment = ml_collections.ConfigDict()
  config.augment.policy = ""         # DiffAugment for D's inputs, e.g. "color,translation,cutout"
  config.augment.ada_target = 0.0    # ADA: apply the policy with a probability p tuned so that
                                     # the mean sign of D(reals) - the loss's decision boundary
                                     # stays near this (0 = off, e.g. 0.6; not with wgan-gp)
  config.augment.ada_interval = 4    # ADA: adjust p every N steps
  config.augment.ada_kimg = 500.0    # ADA: p can go from 0 to 1 in this many thousand images

  config.parallel = "shard_map"      # shard_map | pmap
  config.num_sample_images = 64      # fixed-noise grid size
  config.log_every = 50
  config.sample_every = 500
  config.checkpoint_every = 1000
  config.checkpoint_keep = 3          # keep the last N checkpoints (older ones are deleted)

  # Collapse detectors (gan_jax/monitor/collapse.py): a warning line and a TensorBoard scalar each.
  config.monitor = ml_collections.ConfigDict()
  config.monitor.d_fake_threshold = 0.03  # D overpowering: mean D(G(z)) below this ...
  config.monitor.patience = 5             # ... for this many logs in a row while g_loss rises
  config.monitor.diversity_fraction = 0.25  # mode collapse: sample diversity below this x real's
  config.monitor.stop_on_collapse = False   # stop training when a detector fires

  # FID during training (gan_jax/eval/evaluator.py, docs/evaluation.md); logged as eval/fid.
  config.eval = ml_collections.ConfigDict()
  config.eval.every = 0              # evaluate every N steps and at the end (0 = off)
  config.eval.num_samples = 10_000   # generated images per evaluation
  config.eval.num_real = 0           # real images for the reference statistics (0 = all used)
  config.eval.features = "inception"  # inception (FID) | pixels (cheap random projection)
  config.eval.batch_size = 250       # images per generator / Inception call
  config.eval.keep_best = True       # keep the lowest-FID checkpoint in WORKDIR/best
  return config


def fill(config: ml_collections.ConfigDict,
         defaults: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """`config` (changed in place, and returned) with every option it lacks set to its default.

  Options it has keep their values and types; options the defaults lack stay.
  """
  defaults = get_config() if defaults is None else defaults
  with config.unlocked():
    for name, value in defaults.items():
      if name not in config:
        config[name] = value
      elif isinstance(value, ml_collections.ConfigDict) and isinstance(
          config[name], ml_collections.ConfigDict):
        fill(config[name], value)
  return config


def with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
  """A saved config (a plain dict, as a checkpoint holds it) laid over the defaults.

  Options added after the run was saved take their defaults; saved values win.
  """
  def merge(defaults: dict, values: dict) -> dict:
    merged = dict(defaults)
    for name, value in values.items():
      if isinstance(value, dict) and isinstance(defaults.get(name), dict):
        value = merge(defaults[name], value)
      merged[name] = value
    return merged

  return merge(get_config().to_dict(), saved)
