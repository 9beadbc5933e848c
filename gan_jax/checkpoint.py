"""Orbax checkpoints of the whole GAN state, the data position and the config.

A checkpoint is one Orbax step directory with three items:
  state   -- every array of GANState (the typed PRNG key saved as its raw key data)
  data    -- the input pipeline position (JSON); batches are a function of the step
  config  -- the run's config (JSON), so that generation tools need only the workdir

Saves are asynchronous and atomic (written to `<step>.orbax-checkpoint-tmp`,
then renamed), and only the last `checkpoint_keep` are kept. Restores place the
arrays on the shardings the caller asks for, so a run may resume on another
number of devices. A damaged latest checkpoint is skipped for the one before.

  python -m gan_jax.checkpoint list WORKDIR
  python -m gan_jax.checkpoint fingerprint WORKDIR [--step N]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import logging as std_logging
import pathlib
import shutil
import sys
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from gan_jax.config.options import flatten_options
from gan_jax.training.state import GANState, create_state
from gan_jax.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
# Unreadable steps are moved here (not deleted) when a resume falls back past them.
DAMAGED_DIR = "damaged_checkpoints"

# Options that may change when a run is resumed: they change neither the arrays
# nor the batches. Every top-level `*_every` option (log, sample and checkpoint
# cadence) may change as well, and so may every option in a group named with a
# trailing "." here.
RESUMABLE_CHANGES = frozenset({
    "train.num_steps", "train.deterministic", "checkpoint_keep", "parallel", "model.conv_impl",
    "train.conv_dtype",
    "num_sample_images", "data.path", "data.pipeline", "data.device_budget_mb",
    "data.cache_dir", "monitor.", "eval.",
})
# Of those, the ones worth a warning: the same images may live elsewhere now.
WARN_ON_CHANGE = frozenset({"data.path"})



# --- the state as a tree of plain arrays ---

def state_to_tree(state: GANState) -> dict[str, Any]:
  """GANState as a plain dict of arrays (typed key -> uint32 key data)."""
  tree = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
  tree["key"] = jax.random.key_data(state.key)
  return tree


def tree_to_state(tree: dict[str, Any]) -> GANState:
  tree = dict(tree)
  tree["key"] = jax.random.wrap_key_data(tree["key"])
  return GANState(**tree)


def state_to_tree_abstract(abstract_state: GANState) -> dict[str, Any]:
  """The abstract counterpart of `state_to_tree` (key -> uint32 key-data struct)."""
  tree = {f.name: getattr(abstract_state, f.name) for f in dataclasses.fields(abstract_state)}
  key = abstract_state.key
  key_data = jax.eval_shape(jax.random.key_data, key)
  tree["key"] = jax.ShapeDtypeStruct(key_data.shape, key_data.dtype,
                                     sharding=getattr(key, "sharding", None))
  return tree


def abstract_state(gan, config: ml_collections.ConfigDict, sharding=None) -> GANState:
  """Shapes and dtypes of the state `create_state` makes, placed on `sharding`."""
  shapes = jax.eval_shape(lambda key: create_state(gan, key), jax.random.key(config.seed))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def path_name(path: Sequence[Any]) -> str:
  """'g_opt_state/0/mu/up0/kernel': the same for a GANState, a dict and Orbax metadata."""
  parts = []
  for key in path:
    for attribute in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey
      if hasattr(key, attribute):
        parts.append(str(getattr(key, attribute)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def named_leaves(tree: Any) -> dict[str, Any]:
  return {path_name(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


# --- fingerprints ---

def host_array(x: Any) -> np.ndarray:
  """A leaf as one numpy array (also for arrays spread over several hosts)."""
  if isinstance(x, jax.Array):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    if not x.is_fully_addressable:
      if x.is_fully_replicated:
        x = x.addressable_data(0)
      else:
        from jax.experimental import multihost_utils
        x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(jax.device_get(x))


def fingerprint(tree: Any) -> str:
  """sha256 over every array of `tree`: path, dtype, shape and bytes, sorted by path.

  A GANState and the tree restored from its checkpoint give the same value.
  Arrays split over several hosts are gathered first, so with more than one
  process every process must call this (and all get the same digest).
  """
  if isinstance(tree, GANState):
    tree = state_to_tree(tree)
  digest = hashlib.sha256()
  for name, leaf in sorted(named_leaves(tree).items()):
    array = np.ascontiguousarray(host_array(leaf))
    digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


# --- the manager ---

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


def _restore_state_item(manager: ocp.CheckpointManager, step: int, target: Any,
                        partial: bool = False, with_data: bool = False) -> dict[str, Any]:
  items = {"state": ocp.args.PyTreeRestore(item=target, restore_args=_restore_args(target),
                                           partial_restore=partial)}
  if with_data:
    items["data"] = ocp.args.JsonRestore()
  return manager.restore(step, args=ocp.args.Composite(**items))


def _restore_config(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  saved = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
  return with_defaults(saved)


def with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
  """A saved config laid over today's configs/default.py.

  Options added after a run was saved take their defaults, which is how the
  code behaved before they existed; saved values always win.
  """
  default_file = pathlib.Path(__file__).resolve().parents[1] / "configs" / "default.py"
  if not default_file.is_file():  # not a source checkout: nothing to fill in from
    return saved
  spec = importlib.util.spec_from_file_location("_gan_jax_default_config", default_file)
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


def _saved_shapes(manager: ocp.CheckpointManager, step: int) -> dict[str, tuple]:
  metadata = manager.item_metadata(step)["state"]
  tree = metadata.tree if hasattr(metadata, "tree") else metadata
  if tree is None:
    # Damage (a missing _METADATA), not a mismatch: the caller may fall back.
    raise FileNotFoundError(f"step {step} has no readable state metadata")
  return {name: (tuple(m.shape), np.dtype(m.dtype)) for name, m in named_leaves(tree).items()}


def check_fits(manager: ocp.CheckpointManager, step: int, target: Any) -> None:
  """Raise CheckpointError unless step's saved arrays have target's paths and shapes."""
  saved = _saved_shapes(manager, step)
  wanted = {name: (tuple(x.shape), np.dtype(x.dtype)) for name, x in named_leaves(target).items()}
  problems = [f"{name}: saved {saved.get(name, 'nothing')}, model has {wanted.get(name, 'nothing')}"
              for name in sorted(set(saved) | set(wanted)) if saved.get(name) != wanted.get(name)]
  if problems:
    raise CheckpointError(
        f"the checkpoint at step {step} in {manager.directory} does not fit the model built from "
        f"the current code and config ({len(problems)} arrays differ, e.g. {problems[0]}); "
        "use a new --workdir, or the code and config that wrote it")


# --- config compatibility ---

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


# --- restoring, with a fall-back past damaged checkpoints ---

def _first_line(error: BaseException) -> str:
  """A short description of a restore error (TensorStore appends its whole spec)."""
  text = (str(error).strip().splitlines() or [""])[0].split(" [tensorstore_spec")[0]
  return f"{type(error).__name__}: {text}"[:300]


def _quiet_aborted_reads() -> None:
  """Silence the echoes of a failed restore, for the rest of the process.

  When one read of a damaged checkpoint fails, Orbax closes its event loop while
  TensorStore still finishes the other reads; each then reports a RuntimeError
  'Event loop is closed' (an unraisable exception) or an unretrieved future.
  Both are expected once the failure has been reported; nothing else is dropped.
  """
  previous = sys.unraisablehook
  if getattr(previous, "drops_closed_loop_echoes", False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
      previous(unraisable)

  def keep(record):
    message = record.getMessage()
    return not ("exception was never retrieved" in message and f"/{CHECKPOINT_DIR}/" in message)

  hook.drops_closed_loop_echoes = True
  sys.unraisablehook = hook
  std_logging.getLogger("asyncio").addFilter(keep)


def _move_aside(manager: ocp.CheckpointManager, step: int) -> None:
  """Move a damaged step out of Orbax's way (kept for inspection), so it can be saved anew."""
  source = pathlib.Path(manager.directory) / str(step)
  if not source.exists():
    return
  aside = source.parent.parent / DAMAGED_DIR
  aside.mkdir(exist_ok=True)
  target, n = aside / str(step), 1
  while target.exists():
    target, n = aside / f"{step}.{n}", n + 1
  shutil.move(str(source), str(target))
  logging.warning("moved damaged checkpoint %s to %s", source, target)


def _restore_with_fallback(manager: ocp.CheckpointManager, step: int | None, restore_one,
                           move_damaged: bool = False):
  """restore_one(step) on `step`, or on the latest usable step when `step` is None.

  A step whose files cannot be read is skipped with a warning. CheckpointError
  (a config or shape mismatch, not damage) is raised at once.
  """
  saved = sorted(manager.all_steps(), reverse=True)
  if not saved:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}; train first with "
                            "python -m gan_jax.main --workdir ...")
  if step is not None and step not in saved:
    raise FileNotFoundError(f"no checkpoint of step {step} in {manager.directory}; it holds steps "
                            + ", ".join(str(s) for s in reversed(saved)))
  steps = saved if step is None else [step]
  damaged = []
  for candidate in steps:
    try:
      result = restore_one(candidate)
    except CheckpointError:
      raise
    except Exception as error:  # Orbax/TensorStore raise many kinds for bad files.
      logging.warning("checkpoint at step %d in %s is unreadable (%s)%s", candidate,
                      manager.directory, _first_line(error),
                      "; trying the one before" if candidate != steps[-1] else "")
      damaged.append((candidate, error))
      _quiet_aborted_reads()
      continue
    if damaged:
      logging.warning("using step %d instead of damaged step(s) %s", candidate,
                      ", ".join(str(s) for s, _ in damaged))
      if move_damaged:
        if jax.process_index() == 0:  # one mover on a shared file system
          for bad_step, _ in damaged:
            _move_aside(manager, bad_step)
        if jax.process_count() > 1:
          ocp.multihost.sync_global_processes("gan_jax_moved_damaged_checkpoints")
        manager.reload()
    return candidate, result
  details = "; ".join(f"step {s}: {_first_line(e)}" for s, e in damaged)
  raise CheckpointError(
      f"no usable checkpoint in {manager.directory} ({details}). Delete that directory (or use a "
      "new --workdir) to start the run again from step 0.")


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
      check_config(_restore_config(manager, candidate), config, manager.directory.parent)
    check_fits(manager, candidate, target)
    restored = _restore_state_item(manager, candidate, target, with_data=True)
    return tree_to_state(restored["state"]), restored["data"]

  _, (state, data) = _restore_with_fallback(manager, step, restore_one, move_damaged)
  return state, data


def restore_tree(workdir: str | pathlib.Path, step: int | None = None
                 ) -> tuple[int, dict[str, Any]]:
  """(step, state tree of numpy arrays) as saved, without building any model."""
  manager = make_manager(workdir, read_only=True)

  def restore_one(candidate):
    metadata = manager.item_metadata(candidate)["state"]
    tree = metadata.tree if hasattr(metadata, "tree") else metadata
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), tree)
    return _restore_state_item(manager, candidate, target)["state"]

  return _restore_with_fallback(manager, step, restore_one)


def load_config(workdir: str | pathlib.Path, step: int | None = None) -> ml_collections.ConfigDict:
  """The config saved with a run's checkpoint (latest readable step by default)."""
  manager = make_manager(workdir, read_only=True)
  _, config = _restore_with_fallback(manager, step, lambda s: _restore_config(manager, s))
  return ml_collections.ConfigDict(config)


def load_generator(workdir: str | pathlib.Path, step: int | None = None):
  """(config, gan, g_params, g_batch_stats) of a run, for sampling.

  Only the generator's arrays are read (an Orbax partial restore of the state
  item), onto the default device. The EMA parameters are returned as g_params
  when the run kept them.
  """
  from gan_jax.training.gan import GAN  # here: the model code is only needed for sampling
  manager = make_manager(workdir, read_only=True)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def restore_one(candidate):
    config = ml_collections.ConfigDict(_restore_config(manager, candidate))
    gan = GAN.from_config(config)
    full = state_to_tree_abstract(abstract_state(gan, config, device))
    names = ["g_params", "g_batch_stats"] + (["ema_g_params"] if full["ema_g_params"] else [])
    wanted = {name: full[name] for name in names}
    check_fits_subset(manager, candidate, wanted)
    restored = _restore_state_item(manager, candidate, wanted, partial=True)["state"]
    return config, gan, restored

  _, (config, gan, restored) = _restore_with_fallback(manager, step, restore_one)
  params = restored.get("ema_g_params") or restored["g_params"]
  return config, gan, params, restored.get("g_batch_stats", {})


def check_fits_subset(manager: ocp.CheckpointManager, step: int, target: dict) -> None:
  saved = _saved_shapes(manager, step)
  for name, x in named_leaves(target).items():
    if saved.get(name) != (tuple(x.shape), np.dtype(x.dtype)):
      raise CheckpointError(f"the checkpoint at step {step} in {manager.directory} does not fit "
                            f"the generator its config builds ({name}: saved "
                            f"{saved.get(name, 'nothing')}, model has {x.shape} {x.dtype})")


# --- command line ---

def directory_size(path: pathlib.Path) -> int:
  return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def list_checkpoints(workdir: str | pathlib.Path) -> list[tuple[int, int]]:
  """(step, bytes on disk) of every finished checkpoint, oldest first."""
  manager = make_manager(workdir, read_only=True)
  return [(step, directory_size(pathlib.Path(manager.directory) / str(step)))
          for step in sorted(manager.all_steps())]


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.checkpoint", description=__doc__.split(
      "\n")[0])
  commands = parser.add_subparsers(dest="command", required=True)
  listing = commands.add_parser("list", help="steps and sizes of a run's checkpoints")
  listing.add_argument("workdir")
  printing = commands.add_parser("fingerprint", help="sha256 over every array of a checkpoint")
  printing.add_argument("workdir")
  printing.add_argument("--step", type=int, default=None, help="default: the latest usable")
  args = parser.parse_args(argv)
  # Read checkpoints on the CPU: never take accelerator memory from a running job.
  jax.config.update("jax_platforms", "cpu")
  if not (pathlib.Path(args.workdir) / CHECKPOINT_DIR).is_dir():
    print(f"error: no {CHECKPOINT_DIR}/ under {args.workdir}; is it a training --workdir?",
          file=sys.stderr)
    return 1
  try:
    if args.command == "list":
      for step, size in list_checkpoints(args.workdir):
        print(f"step {step:>9d}  {size / 2**20:10.2f} MiB")
      damaged = pathlib.Path(args.workdir) / DAMAGED_DIR
      if damaged.is_dir():
        print(f"damaged, moved aside: {', '.join(sorted(p.name for p in damaged.iterdir()))} "
              f"in {damaged}")
    else:
      step, tree = restore_tree(args.workdir, args.step)
      print(f"step {step} sha256 {fingerprint(tree)}")
  except (CheckpointError, FileNotFoundError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
