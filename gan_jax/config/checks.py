"""Start-up checks of a training config: fail before compiling, saying what to change.

`validate_config` raises `ConfigError` (a ValueError) for values out of range
and for combinations of techniques that are wrong together, each message
naming the flag that fixes it. The checks of a model family's own options
live with the family (`models.check`). `check_start` adds what depends on the
device count; a training start runs it before it writes anything to the
workdir, so a refused start leaves nothing behind.
"""

from __future__ import annotations


import ml_collections

from gan_jax import models, parallel
from gan_jax.errors import ConfigError
from gan_jax.models import operand_dtype
from gan_jax.training import augment
from gan_jax.training import ema_stats
from gan_jax.training import losses
from gan_jax.training import optim

DTYPES = ("float32", "bfloat16")



def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raise ConfigError naming the fix for the first problem found in `config`."""
  _check_names(config)
  _check_loss_ranges(config.loss, config.augment)
  _check_train_ranges(config)
  models.check(config)  # model.name, and what its family can build
  _check_combinations(config)


def _check_names(config: ml_collections.ConfigDict) -> None:
  """Names that must be one of a list: loss, dtypes, schedule, augmentations."""
  loss, train, optimizer = config.loss, config.train, config.optim
  _require(loss.name in losses.LOSSES,
           f"unknown loss.name {loss.name!r}; choose one of {', '.join(sorted(losses.LOSSES))}")
  _require(train.dtype in DTYPES,
           f"unknown train.dtype {train.dtype!r}; use one of {', '.join(DTYPES)}")
  _require(train.conv_dtype in operand_dtype.CHOICES,
           f"unknown train.conv_dtype {train.conv_dtype!r}; use one of auto, {', '.join(DTYPES)} "
           "(or '' for train.dtype)")
  _require(optimizer.schedule in optim.SCHEDULES,
           f"unknown optim.schedule {optimizer.schedule!r}; use one of {', '.join(optim.SCHEDULES)}")
  try:
    augment.parse_policy(config.augment.policy)
    augment.parse_policy(loss.bcr_augment)
  except ValueError as error:  # an unknown augmentation name
    raise ConfigError(str(error)) from None


def _check_loss_ranges(loss: ml_collections.ConfigDict, ada: ml_collections.ConfigDict) -> None:
  _require(0.0 < loss.real_label <= 1.0,
           f"loss.real_label={loss.real_label} must be in (0, 1] (e.g. 0.9 for one-sided smoothing)")
  _require(0.0 <= loss.flip_prob < 0.5,
           f"loss.flip_prob={loss.flip_prob} must be in [0, 0.5) (e.g. 0.05)")
  _require(loss.gp_weight >= 0, f"loss.gp_weight={loss.gp_weight} must be >= 0")
  _require(loss.r1_gamma >= 0, f"loss.r1_gamma={loss.r1_gamma} must be >= 0 (0 = off)")
  _require(loss.r1_every >= 1, f"loss.r1_every={loss.r1_every} must be >= 1 (1 = every step)")
  _require(0.0 <= ada.ada_target < 1.0,
           f"augment.ada_target={ada.ada_target} must be in [0, 1) (0 = off, e.g. 0.6)")
  _require(ada.ada_interval >= 1, f"augment.ada_interval={ada.ada_interval} must be >= 1 (e.g. 4)")
  _require(ada.ada_kimg > 0, f"augment.ada_kimg={ada.ada_kimg} must be > 0 (e.g. 500)")
  _require(loss.lecam_weight >= 0, f"loss.lecam_weight={loss.lecam_weight} must be >= 0 (0 = off)")
  _require(0.0 <= loss.lecam_decay < 1.0,
           f"loss.lecam_decay={loss.lecam_decay} must be in [0, 1) (e.g. 0.99)")
  _require(loss.bcr_real >= 0 and loss.bcr_fake >= 0,
           f"loss.bcr_real={loss.bcr_real} and loss.bcr_fake={loss.bcr_fake} must be >= 0 "
           "(0 = off)")


def _check_train_ranges(config: ml_collections.ConfigDict) -> None:
  train, optimizer = config.train, config.optim
  _require(train.batch_size >= 1,
           f"train.batch_size={train.batch_size} must be >= 1 (the global batch, e.g. 128)")
  _require(train.num_steps >= 0, f"train.num_steps={train.num_steps} must be >= 0")
  _require(train.d_steps >= 1 and train.g_steps >= 1,
           f"train.d_steps={train.d_steps} and train.g_steps={train.g_steps} must both be >= 1")
  _require(train.balance_margin >= 0,
           f"train.balance_margin={train.balance_margin} must be >= 0 (0 = off)")
  _require(0.0 <= train.ema_decay < 1.0,
           f"train.ema_decay={train.ema_decay} must be in [0, 1) (0 = off, e.g. 0.999)")
  _require(train.ema_batch_stats in ema_stats.MODES,
           f"unknown train.ema_batch_stats {train.ema_batch_stats!r}; use one of "
           f"{', '.join(ema_stats.MODES)}")
  _require(train.ema_stats_batches >= 1 and train.ema_stats_batch_size >= 0,
           f"train.ema_stats_batches={train.ema_stats_batches} must be >= 1 and "
           f"train.ema_stats_batch_size={train.ema_stats_batch_size} >= 0 "
           "(0 = train.batch_size)")
  _require(train.instance_noise >= 0 and train.instance_noise_steps >= 0,
           f"train.instance_noise={train.instance_noise} and train.instance_noise_steps="
           f"{train.instance_noise_steps} must be >= 0")
  _require(optimizer.warmup_steps >= 0, f"optim.warmup_steps={optimizer.warmup_steps} must be >= 0")
  for cadence in ("log_every", "sample_every", "checkpoint_every"):  # every N steps and the last
    _require(config[cadence] >= 1,
             f"{cadence}={config[cadence]} must be >= 1 (set it to train.num_steps for the last "
             "step only)")


def _check_combinations(config: ml_collections.ConfigDict) -> None:
  """Options that are wrong together, each refused with the flag that fixes it."""
  loss, model, ada = config.loss, config.model, config.augment
  if not losses.get_loss(loss.name).label_targets:
    _require(loss.real_label == 1.0 and loss.flip_prob == 0.0,
             f"label smoothing/flipping needs labels, which loss.name={loss.name} does not have; "
             "set --config.loss.real_label=1.0 --config.loss.flip_prob=0.0, or use loss.name "
             "ns, minimax or lsgan")
  _require(not (ada.ada_target > 0 and not augment.parse_policy(config.augment.policy)),
           "augment.ada_target > 0 tunes how often augment.policy applies, which is empty; set "
           "--config.augment.policy=color,translation,cutout (or --config.augment.ada_target=0)")
  # ADA measures D's overfitting as the share of reals D calls real by its loss's boundary.
  _require(not (ada.ada_target > 0 and losses.get_loss(loss.name).boundary is None),
           f"augment.ada_target > 0 tunes p by how many reals D calls real, which the scores of "
           f"loss.name={loss.name}'s critic do not say (they have no decision boundary); set "
           "--config.augment.ada_target=0, or use loss.name ns, minimax, lsgan or hinge")
  bcr = loss.bcr_real > 0 or loss.bcr_fake > 0
  _require(not (bcr and not augment.parse_policy(loss.bcr_augment)),
           "loss.bcr_real/bcr_fake > 0 need an augmentation in loss.bcr_augment; set "
           "--config.loss.bcr_augment=translation")
  _require(not (model.name == "vaegan" and (ada.ada_target > 0 or loss.lecam_weight > 0
                                            or loss.bcr_real > 0 or loss.bcr_fake > 0)),
           "augment.ada_target, loss.lecam_weight and loss.bcr_* work in the GAN step only, not "
           "model.name=vaegan's; set them to 0")
  # Gradient penalties are per-example gradients of D; batch norm mixes the
  # examples of a batch, so the penalty would constrain the wrong function.
  _require(not (loss.name == "wgan-gp" and model.d_batch_norm),
           "loss.name=wgan-gp penalises per-example gradients, which batch norm in D breaks; "
           "set --config.model.d_batch_norm=False (or use --config.model.d_spectral_norm=True "
           "with another loss)")
  _require(not (loss.r1_gamma > 0 and model.d_batch_norm),
           "loss.r1_gamma > 0 penalises per-example gradients, which batch norm in D breaks; "
           "set --config.model.d_batch_norm=False or --config.loss.r1_gamma=0")


def check_devices(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raise ConfigError when the batch does not split over `num_devices` as the model needs."""
  parallel.check_batch_size(config.train.batch_size, num_devices)
  model, per_device = config.model, config.train.batch_size // num_devices
  if not model.d_minibatch_std or model.d_minibatch_std_group < 1:  # < 1: models.check refuses
    return
  # D groups the images it sees on one device (models/layers.py, minibatch_std).
  group = min(model.d_minibatch_std_group, per_device)
  devices = f"{num_devices} device{'s' if num_devices > 1 else ''}"
  _require(per_device % group == 0,
           f"model.d_minibatch_std_group={model.d_minibatch_std_group} must divide the per-device "
           f"batch ({config.train.batch_size} / {devices} = {per_device}); choose a divisor of "
           "it, or another train.batch_size")


def check_start(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Every check of a training start that needs no data and no checkpoint."""
  validate_config(config)
  check_devices(config, num_devices)
