"""Orbax checkpoints of the whole GAN state, the data position and the config.

A checkpoint is one Orbax step directory with three items:
  state   -- every array of GANState (the typed PRNG key saved as its raw key data)
  data    -- the input pipeline position (JSON)
  config  -- the run's config (JSON), so that generation tools need only the workdir
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from gan_jax.state import GANState

CHECKPOINT_DIR = "checkpoints"


def state_to_tree(state: GANState) -> dict[str, Any]:
  """GANState as a plain dict of arrays (typed key -> uint32 key data)."""
  tree = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
  tree["key"] = jax.random.key_data(state.key)
  return tree


def tree_to_state(tree: dict[str, Any]) -> GANState:
  tree = dict(tree)
  tree["key"] = jax.random.wrap_key_data(tree["key"])
  return GANState(**tree)


def make_manager(workdir: str | pathlib.Path, max_to_keep: int = 3,
                 read_only: bool = False) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                         read_only=read_only)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / CHECKPOINT_DIR,
                               options=options, item_names=("state", "data", "config"))


def save(manager: ocp.CheckpointManager, state: GANState, data_position: dict,
         config: ml_collections.ConfigDict) -> None:
  """Start an (asynchronous) save of the state at its own step."""
  step = int(jax.device_get(state.step))
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state_to_tree(state)),
      data=ocp.args.JsonSave(data_position),
      config=ocp.args.JsonSave(config.to_dict())))


def restore(manager: ocp.CheckpointManager, abstract_state: GANState, step: int | None = None
            ) -> tuple[GANState, dict]:
  """Restore (state, data position) onto the shardings of `abstract_state`.

  `abstract_state` is a GANState of jax.ShapeDtypeStruct (e.g. from jax.eval_shape)
  whose `sharding`s say where the arrays go, so a run can resume on a different
  number of devices than the one that saved it.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}")
  target = state_to_tree_abstract(abstract_state)
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
  return tree_to_state(restored["state"]), restored["data"]


def state_to_tree_abstract(abstract_state: GANState) -> dict[str, Any]:
  """The abstract counterpart of `state_to_tree` (key -> uint32 key-data struct)."""
  tree = {f.name: getattr(abstract_state, f.name) for f in dataclasses.fields(abstract_state)}
  key = abstract_state.key
  key_data = jax.eval_shape(jax.random.key_data, key)
  tree["key"] = jax.ShapeDtypeStruct(key_data.shape, key_data.dtype,
                                     sharding=getattr(key, "sharding", None))
  return tree


def load_config(workdir: str | pathlib.Path, step: int | None = None) -> ml_collections.ConfigDict:
  """The config saved with a run's checkpoint (latest step by default)."""
  manager = make_manager(workdir, read_only=True)
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint under {pathlib.Path(workdir) / CHECKPOINT_DIR}; "
                            "train first with python -m gan_jax.main --workdir ...")
  restored = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
  return ml_collections.ConfigDict(restored["config"])
