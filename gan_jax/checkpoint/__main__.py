"""python -m gan_jax.checkpoint: a run's checkpoints, and the fingerprint of one.

  python -m gan_jax.checkpoint list WORKDIR
  python -m gan_jax.checkpoint fingerprint WORKDIR [--step N]

(`--workdir WORKDIR` works too.) `fingerprint` prints the hash on its first
line; when the run has a WORKDIR/run.json (gan_jax/run_record.py), the lines
after it describe the start that wrote the checkpoint and say where it differs
from earlier starts and from the environment running the command.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Sequence

import jax
from absl import logging

from gan_jax import run_record
from gan_jax.checkpoint.fallback import DAMAGED_DIR
from gan_jax.checkpoint.manager import CHECKPOINT_DIR, list_checkpoints, restore_tree
from gan_jax.checkpoint.trees import fingerprint
from gan_jax.cli import run_cli
from gan_jax.errors import CheckpointError


def writing_start(starts: list[dict], step: int) -> int:
  """The index of the start that wrote checkpoint `step`: the last that began before it."""
  before = [i for i, start in enumerate(starts) if (start.get("checkpoint_at_start") or 0) < step]
  return before[-1] if before else len(starts) - 1


def print_run_record(workdir: str, step: int) -> None:
  """The start of the run that wrote `step`, and how it differs from others and from here."""
  starts = run_record.read(workdir)
  if not starts:
    return  # a run from before run.json existed: the hash alone, as then
  index = writing_start(starts, step)
  start = starts[index]
  print(f"written by start {index + 1} of {len(starts)} in {workdir}/{run_record.RUN_RECORD}:")
  for line in run_record.describe(start):
    print(f"  {line}")
  for earlier in range(index):
    lines = run_record.differences(starts[earlier], start, was=f"start {earlier + 1}",
                                   now=f"start {index + 1}")
    if lines:
      print(f"start {earlier + 1} differs from it (a resume in another environment is not "
            "bit-equal to an unbroken run):")
      print("\n".join(f"  {line}" for line in lines))
  here = run_record.current_environment((start.get("devices") or {}).get("platform", "cpu"))
  lines = run_record.differences(start, here)
  if lines:
    print("this environment differs from it (a rerun here may give another hash):")
    print("\n".join(f"  {line}" for line in lines))
  else:
    print("this environment matches it (versions, devices, code)")


def run(args: argparse.Namespace) -> None:
  # Read checkpoints on the CPU: never take accelerator memory from a running job.
  jax.config.update("jax_platforms", "cpu")
  args.workdir = args.workdir_flag or args.workdir
  if args.workdir is None:
    raise CheckpointError("give the training --workdir (as WORKDIR or --workdir WORKDIR)")
  if not (pathlib.Path(args.workdir) / CHECKPOINT_DIR).is_dir():
    raise CheckpointError(f"no {CHECKPOINT_DIR}/ under {args.workdir}; is it a training --workdir?")
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
    print_run_record(args.workdir, step)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.checkpoint",
                                   description="A training run's Orbax checkpoints.")
  commands = parser.add_subparsers(dest="command", required=True)
  listing = commands.add_parser("list", help="steps and sizes of a run's checkpoints")
  printing = commands.add_parser("fingerprint", help="sha256 over every array of a checkpoint, "
                                 "and what the run ran on (WORKDIR/run.json)")
  for command in (listing, printing):
    command.add_argument("workdir", nargs="?", help="the training --workdir")
    command.add_argument("--workdir", dest="workdir_flag", metavar="WORKDIR", help="the same")
  printing.add_argument("--step", type=int, default=None, help="default: the latest usable")
  # Warnings stay visible: a damaged latest checkpoint is reported as it is skipped.
  return run_cli(parser, run, argv, log_level=logging.WARNING)


if __name__ == "__main__":
  sys.exit(main())
