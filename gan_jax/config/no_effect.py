"""Options set to no effect: one warning line each, logged at start-up by the trainer.

An option "is set" when it differs from its default (config/defaults.py). Each rule names an
option that the rest of the config makes inert (an EMA ramp-up without an
EMA, ...), so a run that is not what its command line says is visible in its
first lines; a training technique says this of its own options
(`Technique.inert_options`). Combinations that would train
something else than asked stop instead (`checks.validate_config`, e.g. label
smoothing with hinge or wgan-gp). Another family's inert options are one more
entry in `RULES`.
"""

from __future__ import annotations

from typing import Any, Callable

import ml_collections

from gan_jax.config import defaults as defaults_lib
from gan_jax.training import techniques

_MISSING = object()


def _value(config: ml_collections.ConfigDict, name: str) -> Any:
  node = config
  for part in name.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return _MISSING
    node = node[part]
  return node


class _Options:
  """The config's values by dotted name, and whether each differs from the default."""

  def __init__(self, config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict):
    self.config, self.defaults = config, defaults

  def __getitem__(self, name: str) -> Any:
    value = _value(self.config, name)
    return _value(self.defaults, name) if value is _MISSING else value

  def is_set(self, name: str) -> bool:
    value = _value(self.config, name)
    return value is not _MISSING and value != _value(self.defaults, name)

  def set_among(self, names) -> list[str]:
    return [name for name in names if self.is_set(name)]


def _ema_rampup(o: _Options) -> list[str]:
  if o.is_set("train.ema_rampup") and not o["train.ema_decay"]:
    return [f"train.ema_rampup={o['train.ema_rampup']} has no effect with train.ema_decay=0 "
            "(no EMA of G); set e.g. --config.train.ema_decay=0.999"]
  return []


def _ema_batch_stats(o: _Options) -> list[str]:
  # The EMA's own batch statistics need an EMA, and batch norm in G to have statistics.
  if not o.is_set("train.ema_batch_stats"):
    return []
  option = f"train.ema_batch_stats={o['train.ema_batch_stats']} has no effect with "
  if not o["train.ema_decay"]:
    return [option + "train.ema_decay=0 (no EMA of G); set e.g. --config.train.ema_decay=0.999"]
  if not o["model.g_batch_norm"]:
    return [option + "model.g_batch_norm=False (G has no batch statistics)"]
  return []


def _conv_dtype(o: _Options) -> list[str]:
  if o.is_set("train.conv_dtype") and o["train.conv_dtype"] == o["train.dtype"]:
    return [f"train.conv_dtype={o['train.conv_dtype']} has no effect: it is train.dtype already"]
  return []


def _minibatch_std_group(o: _Options) -> list[str]:
  if o.is_set("model.d_minibatch_std_group") and not o["model.d_minibatch_std"]:
    return [f"model.d_minibatch_std_group={o['model.d_minibatch_std_group']} has no effect with "
            "model.d_minibatch_std=False"]
  return []


def _device_budget(o: _Options) -> list[str]:
  if o.is_set("data.device_budget_mb") and o["data.pipeline"] != "auto":
    return [f"data.device_budget_mb={o['data.device_budget_mb']} has no effect with "
            f"data.pipeline={o['data.pipeline']} (only 'auto' reads it)"]
  return []


def _eval_options(o: _Options) -> list[str]:
  options = o.set_among(f"eval.{name}" for name in
                        ("num_samples", "num_real", "features", "batch_size", "keep_best"))
  if options and not o["eval.every"]:
    return [f"{', '.join(options)} {'has' if len(options) == 1 else 'have'} no effect with "
            "eval.every=0 (no evaluation during training); set --config.eval.every=N"]
  return []


def _monitor_options(o: _Options) -> list[str]:
  lines = []
  overpowering = o.set_among(("monitor.d_fake_threshold", "monitor.patience"))
  if o["loss.name"] == "wgan-gp" and overpowering:
    lines.append(f"{', '.join(overpowering)} {'has' if len(overpowering) == 1 else 'have'} no "
                 "effect with loss.name=wgan-gp: the D-overpowering detector is off for a "
                 "Wasserstein critic")
  elif o.is_set("monitor.patience") and not o["monitor.d_fake_threshold"]:
    lines.append(f"monitor.patience={o['monitor.patience']} has no effect with "
                 "monitor.d_fake_threshold=0 (D-overpowering detector off)")
  no_overpowering = o["loss.name"] == "wgan-gp" or not o["monitor.d_fake_threshold"]
  if (o.is_set("monitor.stop_on_collapse") and o["monitor.stop_on_collapse"] and no_overpowering
      and not o["monitor.diversity_fraction"]):
    lines.append("monitor.stop_on_collapse has no effect: both collapse detectors are off "
                 "(monitor.d_fake_threshold / loss.name, monitor.diversity_fraction=0)")
  return lines


def _inert_without(options, switch: str, is_on: Callable[[_Options], bool]):
  """A rule: `options` do nothing unless `switch` (described) is on."""
  def rule(o: _Options) -> list[str]:
    return techniques.unused_without(o, options, switch, is_on(o))
  return rule


RULES: tuple[Callable[[_Options], list[str]], ...] = (
    techniques.option_warnings,  # each technique's own (training/techniques)
    _ema_rampup, _ema_batch_stats, _conv_dtype,
    _minibatch_std_group, _device_budget, _eval_options, _monitor_options,
    _inert_without(("train.ema_stats_batches", "train.ema_stats_batch_size"),
                   "train.ema_batch_stats other than recompute",
                   lambda o: o["train.ema_batch_stats"] == "recompute"),
    _inert_without(("model.e_width", "model.feature_block", "loss.kl_weight", "loss.recon_weight"),
                   "model.name other than vaegan", lambda o: o["model.name"] == "vaegan"),
    # The style-based networks (models/stylegan2.py) are not yet a model.name that trains.
    _inert_without(("model.w_dim", "model.mapping_layers", "model.mapping_lr_multiplier",
                    "model.style_architecture", "model.channel_max"),
                   "any model.name of today (the style-based family does not train yet)",
                   lambda o: False),
)


def option_warnings(config: ml_collections.ConfigDict,
                    defaults: ml_collections.ConfigDict | None = None) -> list[str]:
  """One line per option that `config` sets (differs from `defaults`, config/defaults.py's
  values when None) but the rest of `config` leaves without effect."""
  options = _Options(config, defaults if defaults is not None else defaults_lib.get_config())
  return [line for rule in RULES for line in rule(options)]
