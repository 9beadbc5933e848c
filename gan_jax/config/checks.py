"""Start-up checks of a training config: fail before compiling, saying what to change.

`validate_config` raises `ConfigError` (a ValueError) for values out of range
and for combinations of techniques that are wrong together, each message
naming the flag that fixes it. The checks of a model family's own options
live with the family (`models.check`).
"""

from __future__ import annotations


import ml_collections

from gan_jax.training import augment
from gan_jax.training import losses
from gan_jax.training import optim
from gan_jax import models
from gan_jax.errors import ConfigError

DTYPES = ("float32", "bfloat16")



def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raise ConfigError naming the fix for the first problem found in `config`."""
  loss, train, model, optimizer = config.loss, config.train, config.model, config.optim

  _require(loss.name in losses.LOSSES,
           f"unknown loss.name {loss.name!r}; choose one of {', '.join(sorted(losses.LOSSES))}")
  _require(train.dtype in DTYPES,
           f"unknown train.dtype {train.dtype!r}; use one of {', '.join(DTYPES)}")
  _require(train.get("conv_dtype", "") in ("",) + DTYPES,
           f"unknown train.conv_dtype {train.get('conv_dtype')!r}; use one of {', '.join(DTYPES)} "
           "(or '' for train.dtype)")
  _require(optimizer.schedule in optim.SCHEDULES,
           f"unknown optim.schedule {optimizer.schedule!r}; use one of {', '.join(optim.SCHEDULES)}")
  try:
    augment.parse_policy(config.augment.policy)
  except ValueError as error:  # an unknown augmentation name
    raise ConfigError(str(error)) from None

  # Ranges.
  _require(0.0 < loss.real_label <= 1.0,
           f"loss.real_label={loss.real_label} must be in (0, 1] (e.g. 0.9 for one-sided smoothing)")
  _require(0.0 <= loss.flip_prob < 0.5,
           f"loss.flip_prob={loss.flip_prob} must be in [0, 0.5) (e.g. 0.05)")
  _require(loss.gp_weight >= 0, f"loss.gp_weight={loss.gp_weight} must be >= 0")
  _require(loss.r1_gamma >= 0, f"loss.r1_gamma={loss.r1_gamma} must be >= 0 (0 = off)")
  _require(loss.r1_every >= 1, f"loss.r1_every={loss.r1_every} must be >= 1 (1 = every step)")
  _require(train.d_steps >= 1 and train.g_steps >= 1,
           f"train.d_steps={train.d_steps} and train.g_steps={train.g_steps} must both be >= 1")
  _require(train.balance_margin >= 0,
           f"train.balance_margin={train.balance_margin} must be >= 0 (0 = off)")
  _require(0.0 <= train.ema_decay < 1.0,
           f"train.ema_decay={train.ema_decay} must be in [0, 1) (0 = off, e.g. 0.999)")
  _require(train.instance_noise >= 0 and train.instance_noise_steps >= 0,
           f"train.instance_noise={train.instance_noise} and train.instance_noise_steps="
           f"{train.instance_noise_steps} must be >= 0")
  _require(optimizer.warmup_steps >= 0, f"optim.warmup_steps={optimizer.warmup_steps} must be >= 0")
  for cadence in ("log_every", "sample_every", "checkpoint_every"):  # every N steps and the last
    _require(config[cadence] >= 1,
             f"{cadence}={config[cadence]} must be >= 1 (set it to train.num_steps for the last "
             "step only)")
  models.check(config)  # model.name, and what its family can build

  # Combinations.
  if not losses.get_loss(loss.name).label_targets:
    _require(loss.real_label == 1.0 and loss.flip_prob == 0.0,
             f"label smoothing/flipping needs labels, which loss.name={loss.name} does not have; "
             "set --config.loss.real_label=1.0 --config.loss.flip_prob=0.0, or use loss.name "
             "ns, minimax or lsgan")
  # Gradient penalties are per-example gradients of D; batch norm mixes the
  # examples of a batch, so the penalty would constrain the wrong function.
  _require(not (loss.name == "wgan-gp" and model.d_batch_norm),
           "loss.name=wgan-gp penalises per-example gradients, which batch norm in D breaks; "
           "set --config.model.d_batch_norm=False (or use --config.model.d_spectral_norm=True "
           "with another loss)")
  _require(not (loss.r1_gamma > 0 and model.d_batch_norm),
           "loss.r1_gamma > 0 penalises per-example gradients, which batch norm in D breaks; "
           "set --config.model.d_batch_norm=False or --config.loss.r1_gamma=0")
