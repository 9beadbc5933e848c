"""Config options on the command line: the --config flag, dotted names, one line for a mistake.

`define_config_flag` defines `--config FILE`, loaded by `files.load` (any path,
from any folder; filled from the defaults before the `--config.KEY=VALUE`
overrides apply, so an older config takes overrides of newer options).
`parse_flags` is `app.run`'s flag parser for the commands that take `--config`
(main, bench, models): a `--config` file that is not there, or an unknown
`--config.KEY`, stops with one line (naming the nearest options) instead of a
traceback. `config_source` names the file and its overrides for the console.
`flatten_options` gives every option its dotted name ("train.batch_size"), as
the resume policy compares them.
"""

from __future__ import annotations

import difflib
from typing import Any, NoReturn

import ml_collections
from absl import app, flags
from ml_collections.config_flags import config_flags

from gan_jax import cli
from gan_jax.config import files
from gan_jax.errors import UserError


def flatten_options(tree: dict, prefix: str = "") -> dict[str, Any]:
  """A nested config dict (`ConfigDict.to_dict()`, or as saved) as {"section.option": value}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten_options(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def unknown_option_message(config: ml_collections.ConfigDict, args: list[str]) -> str | None:
  """What is wrong with the first `--config.KEY[=VALUE]` of `args` naming no option, or None."""
  options = list(flatten_options(config.to_dict()))
  sections = {path.rsplit(".", 1)[0] for path in options if "." in path}
  for arg in args:
    if not arg.startswith("--config."):
      continue
    path = arg[len("--config."):].split("=", 1)[0]
    if path in options or path in sections:
      continue
    section, _, leaf = path.rpartition(".")
    # Most alike first: by the option's own name among its section's (a shared "model."
    # would make any two model options look alike), else by the whole dotted name.
    in_section = {option.rpartition(".")[2]: option for option in options
                  if option.rpartition(".")[0] == section}
    near = [in_section[name] for name in
            difflib.get_close_matches(leaf, list(in_section), n=3, cutoff=0.7)]
    near = near or difflib.get_close_matches(path, options, n=3, cutoff=0.7)
    near += [option for option in options
             if option.rsplit(".", 1)[-1] == leaf and option not in near]  # in another section
    hint = (f" Did you mean {' or '.join('--config.' + option for option in near[:3])}?"
            if near else "")
    return (f"--config.{path}: the config has no option {path!r}.{hint} "
            "gan_jax/config/defaults.py lists every option (docs/options.md explains them).")
  return None


def config_file_argument(argv: list[str]) -> str | None:
  """The value of `--config FILE` or `--config=FILE` in argv."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg[len("--config="):]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


class _ConfigFileParser(config_flags.ConfigFileFlagParser):
  """--config's parser: `files.load` (filled from the defaults), then locked."""

  def parse(self, path):
    config = files.load(path)
    config.lock()  # a misspelt override then fails instead of adding an option
    return config


def define_config_flag(help_string: str) -> flags.FlagHolder:
  """`--config FILE` of a command, with its `--config.KEY=VALUE` overrides (ml_collections)."""
  holder = config_flags.DEFINE_config_file("config", None, help_string, lock_config=True)
  flags.FLAGS[holder.name].parser = _ConfigFileParser(holder.name)
  return holder


def config_source(flag: flags.Flag) -> str:
  """'configs/tiny.py with --config.train.num_steps=60 ...': the --config file and its overrides."""
  overrides = config_flags.get_override_values(flag)
  line = config_flags.get_config_filename(flag)
  if overrides:
    line += " with " + " ".join(f"--config.{path}={value}" for path, value in overrides.items())
  return line


def _exit_with(message: str) -> NoReturn:
  cli.report_error(message)
  raise SystemExit(1) from None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; a `--config` file that cannot be loaded (not there, no get_config) or a
  `--config.KEY` that names no option exits with one clear line."""
  path = config_file_argument(argv)
  try:
    # Loaded here first: absl would wrap the loader's one line into a flag error and a traceback.
    config = files.load(path) if path is not None else None
  except UserError as error:
    _exit_with(str(error))
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError):  # how ml_collections reports a key it does not have
    message = unknown_option_message(config, argv[1:]) if config is not None else None
    if message is None:  # not an override's fault (e.g. a bug in the config file): keep the trace
      raise
    _exit_with(message)
