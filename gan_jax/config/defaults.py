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

  config.data = _data()
  config.model = _model()
  config.train = _train()
  config.optim = _optim()
  config.loss = _loss()
  config.augment = _augment()
  config.parallel = "shard_map"      # shard_map | pmap
  config.num_sample_images = 64      # fixed-noise grid size
  config.log_every = 50
  config.sample_every = 500
  config.checkpoint_every = 1000
  config.checkpoint_keep = 3          # keep the last N checkpoints (older ones are deleted)

  # Collapse detectors (gan_jax/monitor/collapse.py): a warning line and a TensorBoard scalar each.
  config.monitor = _monitor()

  # FID during training (gan_jax/eval/evaluator.py, docs/evaluation.md); logged as eval/fid.
  config.eval = _eval()
  return config


def _data() -> ml_collections.ConfigDict:
  options = ml_collections.ConfigDict()
  options.path = ""              # image folder (prepared once, cached), prepared dir, or uint8 .npy
  options.resolution = 64
  options.crop = "center"        # center | celeba | none
  options.limit = 0              # use only the first N images (0 = all)
  options.holdout = 0            # set the last N images aside, never trained on, for evaluation
  options.pipeline = "auto"      # auto | device | tfdata | numpy (see gan_jax/data/pipeline.py)
  options.device_budget_mb = 4096  # auto: keep the data on each device if it fits this
  options.hflip = False          # mirror a seeded half of each batch
  options.cache_dir = ""         # prepared folders; "" = ${GAN_JAX_CACHE:-~/.cache/gan_jax}/prepared
  return options


def _model() -> ml_collections.ConfigDict:
  options = ml_collections.ConfigDict()
  options.name = "dcgan"
  options.latent_dim = 100
  options.width = 64            # G's last / D's first conv channels
  options.g_width = 0           # 0 = model.width
  options.d_width = 0           # 0 = model.width
  options.g_batch_norm = True
  options.d_batch_norm = True
  options.d_final_size = 0      # D flattens at this side; 0 = G's start size (4, or 9 at 36 px)
  options.d_dropout = 0.0
  options.d_spectral_norm = False  # spectral norm on every D layer (SNGAN)
  options.e_width = 0           # vaegan: the encoder's first conv channels (0 = width)
  options.feature_block = 2     # vaegan: reconstructions compared in D's k-th last conv block
  options.w_dim = 512           # stylegan2 (models/stylegan2.py, not yet trainable): size of w
  options.mapping_layers = 8    # stylegan2: dense layers of the mapping network, z -> w
  options.mapping_lr_multiplier = 0.01  # stylegan2: the mapping network's learning-rate multiplier
  options.style_architecture = "skip"  # stylegan2: G's outputs, skip | resnet
  options.channel_max = 512     # stylegan2: cap on the channels of any layer of G and D
  options.d_minibatch_std = False  # D sees the std over groups of images (ProGAN/StyleGAN)
  options.d_minibatch_std_group = 4  # images per minibatch-std group
  options.conv_impl = "auto"    # auto: stride-2 convs as matrix products on CPU, cuDNN on
                                # GPU; im2col: matrix products everywhere; im2col_rgb: also
                                # on GPU for G's last and D's first layer (faster there,
                                # docs/benchmarks.md)
  return options


def _train() -> ml_collections.ConfigDict:
  options = ml_collections.ConfigDict()
  options.batch_size = 128      # global batch, split over all devices
  options.num_steps = 10_000
  options.dtype = "float32"     # computation dtype: float32 | bfloat16
  options.conv_dtype = "auto"   # convolutions' operands: auto = bfloat16 (summed in float32)
                                # on CPUs with AVX512-BF16 or AMX, else as ""; "" =
                                # train.dtype; float32 | bfloat16 (models/operand_dtype.py)
  options.d_steps = 1           # D updates per iteration (each on fresh fakes)
  options.g_steps = 1           # G updates per iteration
  options.balance_margin = 0.0  # >0: when |L_G - L_D| >= margin update only the weaker net
  options.ema_decay = 0.0       # EMA of G's weights for sampling (0 = off, e.g. 0.999)
  options.ema_rampup = False    # decay = min(ema_decay, (1 + step) / (10 + step))
  options.ema_batch_stats = "live"  # batch-norm statistics the EMA samples with: live (G's
                                # running ones) | recompute (its own, re-estimated on fixed
                                # latents before sampling; gan_jax/training/ema_stats.py)
  options.ema_stats_batches = 8  # recompute: batches of fixed latents ...
  options.ema_stats_batch_size = 0  # ... of this many latents (0 = train.batch_size)
  options.instance_noise = 0.0  # std of Gaussian noise on D's inputs, annealed to 0
  options.instance_noise_steps = 0  # anneal over this many steps (0 = train.num_steps)
  options.deterministic = True  # XLA deterministic GPU ops: same seed -> same weights
  return options


def _optim() -> ml_collections.ConfigDict:
  options = ml_collections.ConfigDict()
  options.g_lr = 2e-4
  options.d_lr = 2e-4
  options.b1 = 0.5
  options.b2 = 0.999
  options.schedule = "constant"  # constant | linear | cosine (decay to 0 at train.num_steps)
  options.warmup_steps = 0      # linear warm-up from 0 before the schedule
  return options


def _loss() -> ml_collections.ConfigDict:
  options = ml_collections.ConfigDict()
  options.name = "ns"            # ns | minimax | lsgan | hinge | wgan-gp
  options.real_label = 1.0       # D's target for reals; 0.9 = one-sided label smoothing
  options.flip_prob = 0.0        # probability of flipping each D label
  options.gp_weight = 10.0       # WGAN-GP gradient-penalty weight (loss.name=wgan-gp only)
  options.r1_gamma = 0.0         # R1 penalty on reals (0 = off)
  options.r1_every = 1           # lazy R1: apply every N steps, scaled by N
  options.lecam_weight = 0.0     # LeCam regularisation of D (0 = off, e.g. 0.3)
  options.lecam_decay = 0.99     # LeCam: decay of the moving averages of D's logits
  options.bcr_real = 0.0         # balanced consistency (bCR) on reals (0 = off)
  options.bcr_fake = 0.0         # bCR on fakes (0 = off)
  options.bcr_augment = "translation"  # bCR's augmentation T (augment.policy names)
  options.kl_weight = 0.01       # model.name=vaegan: weight of E's KL term (per-image sum)
  options.recon_weight = 3.0     # model.name=vaegan: gamma, G's weight of the feature-space
                                 # reconstruction error against its GAN loss
  return options


def _augment() -> ml_collections.ConfigDict:
  options = ml_collections.ConfigDict()
  options.policy = ""         # DiffAugment for D's inputs, e.g. "color,translation,cutout"
  options.ada_target = 0.0    # ADA: apply the policy with a probability p tuned so that
                              # the mean sign of D(reals) - the loss's decision boundary
                              # stays near this (0 = off, e.g. 0.6; not with wgan-gp)
  options.ada_interval = 4    # ADA: adjust p every N steps
  options.ada_kimg = 500.0    # ADA: p can go from 0 to 1 in this many thousand images
  return options


def _monitor() -> ml_collections.ConfigDict:
  options = ml_collections.ConfigDict()
  options.d_fake_threshold = 0.03  # D overpowering: mean D(G(z)) below this ...
  options.patience = 5             # ... for this many logs in a row while g_loss rises
  options.diversity_fraction = 0.25  # mode collapse: sample diversity below this x real's
  options.stop_on_collapse = False   # stop training when a detector fires
  return options


def _eval() -> ml_collections.ConfigDict:
  options = ml_collections.ConfigDict()
  options.every = 0              # evaluate every N steps and at the end (0 = off)
  options.num_samples = 10_000   # generated images per evaluation
  options.num_real = 0           # real images for the reference statistics (0 = all used)
  options.features = "inception"  # inception (FID) | pixels (cheap random projection)
  options.batch_size = 250       # images per generator / Inception call
  options.keep_best = True       # keep the lowest-FID checkpoint in WORKDIR/best
  return options


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
