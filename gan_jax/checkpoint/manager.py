"""A run's Orbax CheckpointManager: save, restore onto given shardings, read a saved config.

Each step directory holds three items: `state` (the tree of `trees.state_to_tree`),
`data` (the input pipeline position, JSON) and `config` (the run's config, JSON).
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from gan_jax.checkpoint import fallback
from gan_jax.checkpoint.trees import (named_leaves, state_to_tree, state_to_tree_abstract,
                                      tree_to_state)
from gan_jax.config.defaults import with_defaults
from gan_jax.config.resume import check_config
from gan_jax.errors import CheckpointError
from gan_jax.training.state import GANState

CHECKPOINT_DIR = "checkpoints"


def _not_the_read_only_notice(record: logging.LogRecord) -> bool:
  # Orbax warns "Given directory is read only" on every read-only open. Ours are read-only
  # on purpose (tools that only read a run), and the notice would stand before their one
  # line of output or error.
  return not str(record.msg).startswith("Given directory is read only")


logging.getLogger("absl").addFilter(_not_the_read_only_notice)


def make_manager(workdir: str | pathlib.Path, max_to_keep: int = 3,
                 read_only: bool = False, lowest: str | None = None) -> ocp.CheckpointManager:
  """The run's CheckpointManager (async, atomic saves; keeps the last `max_to_keep`).

  With `lowest` (a metric name, e.g. 'fid'), the `max_to_keep` steps with the
  lowest value of that metric are kept instead; see `save(metrics=...)`.
  """
  directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
  if read_only:
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
  else:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True,
        # Half-written saves of a killed run are removed on start.
        cleanup_tmp_directories=True,
        best_fn=(lambda metrics: metrics[lowest]) if lowest else None, best_mode="min")
  handlers = {"state": ocp.PyTreeCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
              "config": ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def save(manager: ocp.CheckpointManager, state: GANState, data_position: dict,
         config: ml_collections.ConfigDict, step: int | None = None,
         metrics: dict | None = None) -> None:
  """Start an (asynchronous) save of the state at `step` (default: read from the state).

  `metrics` (e.g. the FID of the best checkpoint) are stored with the step.
  """
  step = int(jax.device_get(state.step)) if step is None else step
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeSave(state_to_tree(state)),
      data=ocp.args.JsonSave(data_position),
      config=ocp.args.JsonSave(config.to_dict())), metrics=metrics)


def _restore_args(target: Any) -> Any:
  """Per-leaf restore args: onto a leaf's sharding, or as numpy without one."""
  def leaf_args(x):
    if getattr(x, "sharding", None) is None:
      return ocp.RestoreArgs(restore_type=np.ndarray, dtype=x.dtype)
    return ocp.ArrayRestoreArgs(sharding=x.sharding, global_shape=x.shape, dtype=x.dtype)
  return jax.tree.map(leaf_args, target)


def restore_state_item(manager: ocp.CheckpointManager, step: int, target: Any,
                       partial: bool = False, with_data: bool = False) -> dict[str, Any]:
  """{'state': arrays of `target` (only those, with `partial`), 'data': position if asked}."""
  items = {"state": ocp.args.PyTreeRestore(item=target, restore_args=_restore_args(target),
                                           partial_restore=partial)}
  if with_data:
    items["data"] = ocp.args.JsonRestore()
  return manager.restore(step, args=ocp.args.Composite(**items))


def restore_config(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  """The config saved at `step`, laid over today's defaults (`config.defaults.with_defaults`)."""
  saved = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
  return with_defaults(saved)


def _saved_shapes(manager: ocp.CheckpointManager, step: int) -> dict[str, tuple]:
  metadata = manager.item_metadata(step)["state"]
  tree = metadata.tree if hasattr(metadata, "tree") else metadata
  if tree is None:
    # Damage (a missing _METADATA), not a mismatch: the caller may fall back.
    raise FileNotFoundError(f"step {step} has no readable state metadata")
  return {name: (tuple(m.shape), np.dtype(m.dtype)) for name, m in named_leaves(tree).items()}


def check_fits(manager: ocp.CheckpointManager, step: int, target: Any,
               partial: bool = False) -> None:
  """Raise CheckpointError unless step's saved arrays have target's paths and shapes.

  With `partial`, the checkpoint may hold more arrays than `target`.
  """
  saved = _saved_shapes(manager, step)
  wanted = {name: (tuple(x.shape), np.dtype(x.dtype)) for name, x in named_leaves(target).items()}
  names = sorted(set(wanted) if partial else set(saved) | set(wanted))
  problems = [f"{name}: saved {saved.get(name, 'nothing')}, model has {wanted.get(name, 'nothing')}"
              for name in names if saved.get(name) != wanted.get(name)]
  if problems:
    raise CheckpointError(
        f"the checkpoint at step {step} in {manager.directory} does not fit the model built from "
        f"the current code and config ({len(problems)} arrays differ, e.g. {problems[0]}); "
        "use a new --workdir, or the code and config that wrote it")


def restore(manager: ocp.CheckpointManager, abstract: GANState, step: int | None = None,
            config: ml_collections.ConfigDict | None = None, move_damaged: bool = False
            ) -> tuple[GANState, dict]:
  """Restore (state, data position) onto the shardings of `abstract`.

  `abstract` is a GANState of jax.ShapeDtypeStruct (see `abstract_state`) whose
  `sharding`s say where the arrays go, so a run can resume on a different
  number of devices than the one that saved it. Without `step`, the latest
  readable step is used; with `move_damaged`, damaged later ones are moved to
  DAMAGED_DIR so that the resumed run can save those steps again. With
  `config`, a run whose saved config differs in an option that matters is
  refused with CheckpointError.
  """
  target = state_to_tree_abstract(abstract)

  def restore_one(candidate):
    if config is not None:
      check_config(restore_config(manager, candidate), config, manager.directory.parent)
    check_fits(manager, candidate, target)
    restored = restore_state_item(manager, candidate, target, with_data=True)
    return tree_to_state(restored["state"], type(abstract)), restored["data"]

  _, (state, data) = fallback.restore_with_fallback(manager, step, restore_one, move_damaged)
  return state, data


def restore_tree(workdir: str | pathlib.Path, step: int | None = None
                 ) -> tuple[int, dict[str, Any]]:
  """(step, state tree of numpy arrays) as saved, without building any model."""
  manager = make_manager(workdir, read_only=True)

  def restore_one(candidate):
    metadata = manager.item_metadata(candidate)["state"]
    tree = metadata.tree if hasattr(metadata, "tree") else metadata
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), tree)
    return restore_state_item(manager, candidate, target)["state"]

  return fallback.restore_with_fallback(manager, step, restore_one)


def load_config(workdir: str | pathlib.Path, step: int | None = None) -> ml_collections.ConfigDict:
  """The config saved with a run's checkpoint (latest readable step by default)."""
  manager = make_manager(workdir, read_only=True)
  _, config = fallback.restore_with_fallback(manager, step,
                                             lambda s: restore_config(manager, s))
  return ml_collections.ConfigDict(config)


def directory_size(path: pathlib.Path) -> int:
  return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def list_checkpoints(workdir: str | pathlib.Path) -> list[tuple[int, int]]:
  """(step, bytes on disk) of every finished checkpoint, oldest first."""
  manager = make_manager(workdir, read_only=True)
  return [(step, directory_size(pathlib.Path(manager.directory) / str(step)))
          for step in sorted(manager.all_steps())]
