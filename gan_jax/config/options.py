"""Config options on the command line: dotted names, and one line for a misspelt one.

`parse_flags` is `app.run`'s flag parser for the commands that take `--config`
(main, bench, models): an unknown `--config.KEY` stops with one line naming the
nearest options instead of a traceback. `flatten_options` gives every option
its dotted name ("train.batch_size"), as the resume policy compares them.
"""

from __future__ import annotations

import difflib
from typing import Any

import ml_collections
from absl import app
from ml_collections.config_flags import config_flags

from gan_jax import cli


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
    leaf = path.rsplit(".", 1)[-1]
    near = difflib.get_close_matches(path, options, n=3, cutoff=0.7)  # most alike first
    near += [option for option in options
             if option.rsplit(".", 1)[-1] == leaf and option not in near]  # in another section
    hint = (f" Did you mean {' or '.join('--config.' + option for option in near[:3])}?"
            if near else "")
    return (f"--config.{path}: the config has no option {path!r}.{hint} "
            "configs/default.py lists every option (docs/options.md explains them).")
  return None


def _config_file(argv: list[str]) -> str | None:
  """The value of `--config FILE` or `--config=FILE` in argv."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg[len("--config="):]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; a `--config.KEY` that names no option exits with one clear line."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError):  # how ml_collections reports a key it does not have
    # The error comes while --config itself is parsed (it applies the overrides), so
    # the flag holds no config yet: load the file again to list its options.
    path = _config_file(argv)
    if path is None:
      raise
    config = config_flags.ConfigFileFlagParser("config").parse(path)
    message = unknown_option_message(config, argv[1:])
    if message is None:  # not an override's fault (e.g. a bug in the config file): keep the trace
      raise
    cli.report_error(message)
    raise SystemExit(1) from None
