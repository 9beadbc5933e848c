"""Choosing the step to restore: the asked one, or the latest readable one past damaged steps.

A run killed or out of disk space mid-save leaves nothing half-written (Orbax
saves atomically), but files can still be lost or truncated later. A resume
then warns, uses the step before, and moves the damaged step aside (kept for
inspection) so the run can save that step again. No checkpoint at all, or no
such step, is one `CheckpointError` that says what to do.
"""

from __future__ import annotations

import logging as std_logging
import pathlib
import shutil
import sys
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging

from gan_jax.errors import CheckpointError

# Unreadable steps are moved here (not deleted) when a resume falls back past them.
DAMAGED_DIR = "damaged_checkpoints"


def saved_steps(manager: ocp.CheckpointManager, step: int | None = None) -> list[int]:
  """The finished steps to try, newest first: all of them, or just `step`.

  The one "no checkpoint" error of every command that reads a run: it names
  the directory and says to train first, or lists the steps there are.
  """
  directory = pathlib.Path(manager.directory)
  saved = sorted(manager.all_steps(), reverse=True) if directory.is_dir() else []
  if not saved:
    raise CheckpointError(f"no checkpoints in {directory}; train first with "
                          f"`python -m gan_jax.main --config ... --workdir {directory.parent}`")
  if step is None:
    return saved
  if step not in saved:
    raise CheckpointError(f"no checkpoint for step {step} in {directory}; available steps: "
                          + ", ".join(str(s) for s in reversed(saved)))
  return [step]


def first_line(error: BaseException) -> str:
  """A short description of a restore error (TensorStore appends its whole spec)."""
  text = (str(error).strip().splitlines() or [""])[0].split(" [tensorstore_spec")[0]
  return f"{type(error).__name__}: {text}"[:300]


def quiet_aborted_reads(directory_name: str) -> None:
  """Silence the echoes of a failed restore from `directory_name`, for the rest of the process.

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
    return not ("exception was never retrieved" in message and f"/{directory_name}/" in message)

  hook.drops_closed_loop_echoes = True
  sys.unraisablehook = hook
  std_logging.getLogger("asyncio").addFilter(keep)


def move_aside(manager: ocp.CheckpointManager, step: int) -> None:
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


def restore_with_fallback(manager: ocp.CheckpointManager, step: int | None,
                          restore_one: Callable[[int], Any], move_damaged: bool = False
                          ) -> tuple[int, Any]:
  """(step, restore_one(step)) for `step`, or for the latest usable step when `step` is None.

  A step whose files cannot be read is skipped with a warning; with
  `move_damaged`, skipped steps are moved to DAMAGED_DIR once a step restores.
  CheckpointError (a config or shape mismatch, not damage) is raised at once.
  """
  steps = saved_steps(manager, step)
  damaged = []
  for candidate in steps:
    try:
      result = restore_one(candidate)
    except CheckpointError:
      raise
    except Exception as error:  # Orbax/TensorStore raise many kinds for bad files.
      logging.warning("checkpoint at step %d in %s is unreadable (%s)%s", candidate,
                      manager.directory, first_line(error),
                      "; trying the one before" if candidate != steps[-1] else "")
      damaged.append((candidate, error))
      quiet_aborted_reads(pathlib.Path(manager.directory).name)
      continue
    if damaged:
      logging.warning("using step %d instead of damaged step(s) %s", candidate,
                      ", ".join(str(s) for s, _ in damaged))
      if move_damaged:
        if jax.process_index() == 0:  # one mover on a shared file system
          for bad_step, _ in damaged:
            move_aside(manager, bad_step)
        if jax.process_count() > 1:
          ocp.multihost.sync_global_processes("gan_jax_moved_damaged_checkpoints")
        manager.reload()
    return candidate, result
  details = "; ".join(f"step {s}: {first_line(e)}" for s, e in damaged)
  raise CheckpointError(
      f"no usable checkpoint in {manager.directory} ({details}). Delete that directory (or use a "
      "new --workdir) to start the run again from step 0.")
