"""The command-line conventions every `python -m gan_jax.<command>` follows.

argparse commands: `run_cli(parser, run, argv)` parses, runs, and turns an
error the user can cause (`errors.UserError`) into one line on stderr,
`error: <what is wrong and what to do>`, and exit code 1; argparse itself
reports bad flags with exit code 2. The types below give the flags' values
one meaning everywhere.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from absl import logging

from gan_jax.errors import UserError


def int_list(text: str) -> list[int]:
  """argparse type for '3,7,11'."""
  try:
    values = [int(part) for part in text.split(",") if part.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
  if not values:
    raise argparse.ArgumentTypeError("expected at least one integer")
  return values


def positive_int(text: str) -> int:
  """argparse type for a count that must be at least 1."""
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
  return value


def path_list(text: str) -> list[str]:
  """argparse type for 'a.npy,b.npy'."""
  return [part for part in text.split(",") if part.strip()]


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--workdir", required=True,
                      help="training directory (the one given to gan_jax.main); its checkpoints/ "
                           "hold the weights and the config")
  parser.add_argument("--step", type=int, default=None,
                      help="checkpoint step to load (default: the latest)")
  parser.add_argument("--batch_size", type=positive_int, default=64,
                      help="images per generator call (lower it if memory runs out)")


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], None],
            argv: Sequence[str] | None) -> int:
  """Parse argv, run, and turn user errors into one line on stderr and exit code 1."""
  args = parser.parse_args(argv)
  logging.set_verbosity(logging.ERROR)  # Orbax reports every restore at INFO/WARNING.
  try:
    run(args)
  except UserError as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  return 0
