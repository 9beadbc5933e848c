"""The resume policy: which config options a resumed run may change, and saved configs' defaults.

A checkpoint stores its run's config. Resuming with another value of an
option that changes the arrays or the batches would silently continue another
run, so `check_config` refuses it; cadence, length, placement and monitoring
options may change. The saved config is compared after `defaults.with_defaults`
has filled the options added after the run was saved.
"""

from __future__ import annotations

import json
from typing import Any

import ml_collections
from absl import logging

# A saved config filled from the defaults; named here too for the readers of saved runs.
from gan_jax.config.defaults import with_defaults  # noqa: F401
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
  length_dependent = (now["optim.schedule"] != "constant" or (
      now["train.instance_noise"] and not now["train.instance_noise_steps"]))
  if saved.get("train.num_steps") != now.get("train.num_steps") and length_dependent:
    logging.warning("train.num_steps changed from %s to %s: the learning-rate schedule / instance "
                    "noise, which end at train.num_steps, now follow the new length",
                    saved.get("train.num_steps"), now.get("train.num_steps"))
