"""The command-line conventions every `python -m gan_jax.<command>` follows.

An error the user can cause (`errors.UserError`) ends a command with one line
on stderr, `error: <what is wrong and what to do>`, and exit code 1; a flag
that does not parse is the flag parser's to report (argparse: usage and exit
code 2); --help prints the usage and exits with code 0. argparse commands
get this from `run_cli(parser, run, argv)`; the absl commands that take
`--config` (main, bench, models) decorate their main with
`@exit_on_user_error()` and start with `run_absl`. The types below give the
flags' values one meaning everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import Callable, Iterator, Sequence

from absl import app, logging

from gan_jax.errors import UserError

ExceptionTypes = tuple[type[BaseException], ...]
# absl's help flags; each prints the usage and exits (with code 1, which run_absl makes 0).
ABSL_HELP_FLAGS = ("--help", "-help", "--helpshort", "-helpshort", "--helpfull", "-helpfull", "-?")


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
  """--workdir, --step and --batch_size of the commands that sample a trained generator."""
  parser.add_argument("--workdir", required=True,
                      help="training directory (the one given to gan_jax.main); its checkpoints/ "
                           "hold the weights and the config")
  parser.add_argument("--step", type=int, default=None,
                      help="checkpoint step to load (default: the latest)")
  parser.add_argument("--batch_size", type=positive_int, default=64,
                      help="images per generator call (lower it if memory runs out)")


def report_error(error: BaseException) -> None:
  """The one line on stderr that a user error ends a command with."""
  print(f"error: {error}", file=sys.stderr)


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int | None],
            argv: Sequence[str] | None, *, also: ExceptionTypes = (),
            log_level: int = logging.ERROR) -> int:
  """Parse argv, run, and turn user errors into one line on stderr and exit code 1.

  Returns the exit code: `run`'s return value, or 0 when it returns None. `also`
  names exceptions other than `errors.UserError` that this command reports the
  same way (ones its libraries raise for bad input). Library log records below
  `log_level` are not shown while the command runs.
  """
  args = parser.parse_args(argv)
  # Orbax reports every restore at INFO/WARNING: quiet while the command runs, and
  # only then, so a caller in the same process (a test, a notebook) keeps its level.
  verbosity = logging.get_verbosity()
  logging.set_verbosity(log_level)
  try:
    code = run(args)
    sys.stdout.flush()  # here, so that a closed pipe is met inside this `try`
  except (UserError, *also) as error:
    report_error(error)
    return 1
  except BrokenPipeError:
    # The reader went away (`... | head -1`): stop quietly, as a Unix tool killed by
    # SIGPIPE does (exit 141), and let nothing try to write to the pipe again at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + signal.SIGPIPE
  finally:
    logging.set_verbosity(verbosity)
  return 0 if code is None else code


@contextlib.contextmanager
def exit_on_user_error(*also: type[BaseException]) -> Iterator[None]:
  """A user error (or one of `also`) ends the program as in `run_cli`: one line, exit code 1.

  For absl commands, as a decorator of their main (or a `with` block): absl's
  `app.run` passes the SystemExit on, so no traceback follows the line.
  """
  try:
    yield
  except (UserError, *also) as error:
    report_error(error)
    raise SystemExit(1) from None


def run_absl(main: Callable[[list[str]], None],
             flags_parser: Callable[[list[str]], list[str]]) -> None:
  """`app.run(main, flags_parser=...)`, where --help exits with code 0 as argparse's does.

  absl prints the help and exits with code 1; that reads as a failure to
  scripts that check a command with --help. The help flag is parsed alone, so
  nothing else on the command line can fail in its place.
  """
  def parse(argv: list[str]) -> list[str]:
    flag_args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    asked = [arg for arg in flag_args if arg in ABSL_HELP_FLAGS]
    if asked:
      try:
        flags_parser([argv[0], asked[0]])
      except SystemExit as stop:
        raise SystemExit(0 if stop.code == 1 else stop.code) from None
    return flags_parser(argv)

  app.run(main, flags_parser=parse)
