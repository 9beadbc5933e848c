"""Start-up checks of a training config: fail before compiling, saying what to change.

`validate_config` raises `ConfigError` (a ValueError) for values out of range
and for combinations of techniques that are wrong together, each message
naming the flag that fixes it. The checks of a model family's own options
live with its networks (gan_jax/models), those of a technique's with the
technique (training/techniques), both run through `family.check`. `check_start` adds what depends on the
device count; a training start runs it before it writes anything to the
workdir, so a refused start leaves nothing behind.
"""

from __future__ import annotations

import ml_collections

from gan_jax import parallel
from gan_jax.errors import ConfigError
from gan_jax.models import operand_dtype
from gan_jax.training import ema_stats
from gan_jax.training import family
from gan_jax.training import losses
from gan_jax.training import optim

DTYPES = ("float32", "bfloat16")


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raise ConfigError naming the fix for the first problem found in `config`."""
  _check_names(config)
  _check_train_ranges(config)
  # model.name, what its family can build, and the techniques' options (each checks its
  # own, and the family refuses those its step cannot run).
  family.check(config)


def _check_names(config: ml_collections.ConfigDict) -> None:
  """Names that must be one of a list: loss, dtypes, schedule."""
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


def _check_train_ranges(config: ml_collections.ConfigDict) -> None:
  train, optimizer = config.train, config.optim
  _require(train.batch_size >= 1,
           f"train.batch_size={train.batch_size} must be >= 1 (the global batch, e.g. 128)")
  _require(train.num_steps >= 0, f"train.num_steps={train.num_steps} must be >= 0")
  _require(train.d_steps >= 1 and train.g_steps >= 1,
           f"train.d_steps={train.d_steps} and train.g_steps={train.g_steps} must both be >= 1")
  _require(0.0 <= train.ema_decay < 1.0,
           f"train.ema_decay={train.ema_decay} must be in [0, 1) (0 = off, e.g. 0.999)")
  _require(train.ema_batch_stats in ema_stats.MODES,
           f"unknown train.ema_batch_stats {train.ema_batch_stats!r}; use one of "
           f"{', '.join(ema_stats.MODES)}")
  _require(train.ema_stats_batches >= 1 and train.ema_stats_batch_size >= 0,
           f"train.ema_stats_batches={train.ema_stats_batches} must be >= 1 and "
           f"train.ema_stats_batch_size={train.ema_stats_batch_size} >= 0 "
           "(0 = train.batch_size)")
  _require(optimizer.warmup_steps >= 0, f"optim.warmup_steps={optimizer.warmup_steps} must be >= 0")
  for cadence in ("log_every", "sample_every", "checkpoint_every"):  # every N steps and the last
    _require(config[cadence] >= 1,
             f"{cadence}={config[cadence]} must be >= 1 (set it to train.num_steps for the last "
             "step only)")


def check_devices(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raise ConfigError when the batch does not split over `num_devices` as the model needs."""
  parallel.check_batch_size(config.train.batch_size, num_devices)
  model, per_device = config.model, config.train.batch_size // num_devices
  if not model.d_minibatch_std or model.d_minibatch_std_group < 1:  # < 1: the family's check refuses
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
