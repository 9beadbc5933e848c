"""Config files by path: `--config FILE` from any folder, and the configs a config builds on.

A config file is a Python file whose `get_config()` returns a ConfigDict. `load`
runs one from its path, relative to the current folder or absolute, and fills
what it lacks from the defaults (`defaults.fill`). A config that builds on
another config file (configs/faces32_best.py on faces32_diffaug.py) gets it
with `base(__file__, NAME)`: beside itself first, so a folder of your own
configs can hold its own bases, else from the project's configs/ folder, so a
copy of a project config works wherever it is saved. The defaults themselves
are a module of the package (`from gan_jax.config import defaults`). None of
this depends on the current folder or on `configs` being importable.
"""

from __future__ import annotations

import importlib.util
import pathlib
import types

import ml_collections

from gan_jax.config import defaults
from gan_jax.errors import ConfigError

# The project's configs in a source checkout (absent from an installed package).
PROJECT_CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


def _module(path: pathlib.Path) -> types.ModuleType:
  """The config file at `path`, run as a module of its own (not put into sys.modules)."""
  spec = importlib.util.spec_from_file_location(f"gan_jax_config_file_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def base(config_file: str, name: str) -> types.ModuleType:
  """The config module NAME.py that the config at `config_file` (its __file__) builds on."""
  beside = pathlib.Path(config_file).resolve().parent / f"{name}.py"
  for path in (beside, PROJECT_CONFIGS / f"{name}.py"):
    if path.is_file():
      return _module(path)
  raise ConfigError(f"{config_file} builds on the config {name}.py, which is neither beside it "
                    f"nor in {PROJECT_CONFIGS}; copy {name}.py from the project's configs/ "
                    "folder beside it")


def load(argument: str) -> ml_collections.ConfigDict:
  """The config of `--config FILE[:ARG]` (get_config(ARG) with an argument), filled from the
  defaults; one line (ConfigError) for a file that is not there or not a config."""
  path_text, *config_args = argument.split(":", 1)
  path = pathlib.Path(path_text).expanduser()
  if not path.is_file():
    where = "" if path.is_absolute() else f" in the current folder {pathlib.Path.cwd()}"
    example = PROJECT_CONFIGS / "tiny.py"
    raise ConfigError(f"--config {path_text}: no such file{where}; give the path of a config "
                      f"file{f', e.g. {example}' if example.is_file() else ''}")
  get_config = getattr(_module(path), "get_config", None)
  if not callable(get_config):
    raise ConfigError(f"--config {path_text} defines no get_config(); a config file's "
                      "get_config() returns an ml_collections.ConfigDict (see configs/tiny.py)")
  config = get_config(*config_args)
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"--config {path_text}: get_config() returned a {type(config).__name__}, "
                      "not an ml_collections.ConfigDict")
  return defaults.fill(config)
