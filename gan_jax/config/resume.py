"""The resume policy: which config options a resumed run may change, and saved configs' defaults.

A checkpoint stores its run's config. Resuming with another value of an
option that changes the arrays or the batches would silently continue another
run, so `check_config` refuses it; cadence, length, placement and monitoring
options may change. `with_defaults` fills options added after a run was saved
with today's defaults (configs/default.py), which is how the code behaved
before they existed.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
from typing import Any

import ml_collections
from absl import logging

from gan_jax.config.options import flatten_options
from gan_jax.errors import CheckpointError

# Options that may change when a run is resumed: they change neither the arrays
# nor the batches. Every top-level `*_every` option (log, sample and checkpoint
# cadence) may change as well, and so may every option in a group named with a
# trailing "." here.
RESUMABLE_CHANGES = frozenset({
    "train.num_steps", "train.deterministic", "checkpoint_keep", "parallel", "model.conv_impl",
    "train.conv_dtype", "train.ema_batch_stats", "train.ema_stats_batches",
    "train.ema_stats_batch_size",
    "num_sample_images", "data.path", "data.pipeline", "data.device_budget_mb",
    "data.cache_dir", "monitor.", "eval.",
})
# Of those, the ones worth a warning: the same images may live elsewhere now.
WARN_ON_CHANGE = frozenset({"data.path"})

# configs/ sits beside the package in a source checkout.
DEFAULT_CONFIG_FILE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "default.py"


def with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
  """A saved config laid over today's configs/default.py.

  Options added after a run was saved take their defaults, which is how the
  code behaved before they existed; saved values always win.
  """
  if not DEFAULT_CONFIG_FILE.is_file():  # not a source checkout: nothing to fill in from
    return saved
  spec = importlib.util.spec_from_file_location("_gan_jax_default_config", DEFAULT_CONFIG_FILE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)

  def merge(defaults: dict, values: dict) -> dict:
    merged = dict(defaults)
    for name, value in values.items():
      if isinstance(value, dict) and isinstance(defaults.get(name), dict):
        value = merge(defaults[name], value)
      merged[name] = value
    return merged

  return merge(module.get_config().to_dict(), saved)


def may_change_on_resume(name: str) -> bool:
  """Whether the dotted config option `name` may differ from the checkpoint's."""
  groups = [prefix for prefix in RESUMABLE_CHANGES if prefix.endswith(".")]
  # Only top-level *_every are cadence: loss.r1_every, say, changes the training.
  return (name in RESUMABLE_CHANGES or ("." not in name and name.endswith("_every"))
          or any(name.startswith(prefix) for prefix in groups))


def config_differences(saved: dict, current: dict) -> list[str]:
  """'name: saved X, now Y' for every option that must not change on resume."""
  missing = "(absent)"
  saved = flatten_options(saved)
  # Compare through JSON so that tuples/lists etc. look as they do on disk.
  current = flatten_options(json.loads(json.dumps(current)))
  changed = [name for name in sorted(set(saved) | set(current))
             if saved.get(name, missing) != current.get(name, missing)]
  return [f"{name}: saved {saved.get(name, missing)!r}, now {current.get(name, missing)!r}"
          for name in changed if not may_change_on_resume(name)]


def check_config(saved: dict, config: ml_collections.ConfigDict, workdir: Any) -> None:
  """Raise CheckpointError when `config` changes an option a resumed run must keep."""
  differences = config_differences(saved, config.to_dict())
  if differences:
    allowed = sorted(name + "*" if name.endswith(".") else name for name in RESUMABLE_CHANGES)
    raise CheckpointError(
        f"{workdir} holds a run with a different config, so it cannot be resumed: "
        + "; ".join(differences) + ". Use a new --workdir, or pass the saved values (only "
        + ", ".join(allowed) + " and the top-level *_every options may change on resume).")
  saved, now = flatten_options(saved), flatten_options(config.to_dict())
  for name in sorted(WARN_ON_CHANGE):
    if saved.get(name) != now.get(name):
      logging.warning("resuming with %s=%r; the checkpoint was trained with %r",
                      name, now.get(name), saved.get(name))
  length_dependent = (now.get("optim.schedule", "constant") != "constant" or (
      now.get("train.instance_noise", 0) and not now.get("train.instance_noise_steps")))
  if saved.get("train.num_steps") != now.get("train.num_steps") and length_dependent:
    logging.warning("train.num_steps changed from %s to %s: the learning-rate schedule / instance "
                    "noise, which end at train.num_steps, now follow the new length",
                    saved.get("train.num_steps"), now.get("train.num_steps"))
