"""python -m gan_jax.checkpoint: a run's checkpoints, and the fingerprint of one.

  python -m gan_jax.checkpoint list WORKDIR
  python -m gan_jax.checkpoint fingerprint WORKDIR [--step N]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Sequence

import jax
from absl import logging

from gan_jax.checkpoint.fallback import DAMAGED_DIR
from gan_jax.checkpoint.manager import CHECKPOINT_DIR, list_checkpoints, restore_tree
from gan_jax.checkpoint.trees import fingerprint
from gan_jax.cli import run_cli
from gan_jax.errors import CheckpointError


def run(args: argparse.Namespace) -> None:
  # Read checkpoints on the CPU: never take accelerator memory from a running job.
  jax.config.update("jax_platforms", "cpu")
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


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.checkpoint",
                                   description="A training run's Orbax checkpoints.")
  commands = parser.add_subparsers(dest="command", required=True)
  listing = commands.add_parser("list", help="steps and sizes of a run's checkpoints")
  listing.add_argument("workdir")
  printing = commands.add_parser("fingerprint", help="sha256 over every array of a checkpoint")
  printing.add_argument("workdir")
  printing.add_argument("--step", type=int, default=None, help="default: the latest usable")
  # Warnings stay visible: a damaged latest checkpoint is reported as it is skipped.
  return run_cli(parser, run, argv, log_level=logging.WARNING)


if __name__ == "__main__":
  sys.exit(main())
