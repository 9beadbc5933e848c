"""gan_jax: face-generating GANs in JAX/Flax.

A command lives in the package that owns it (`generate` in explore/, `prepare`
in data/, ...) and the docs call it by its short name: `COMMANDS` maps one to
the other, and `CommandFinder`, put on Python's import path here (Python
imports this package before it looks for `gan_jax.generate`), lets
`python -m gan_jax.generate` run gan_jax/explore/generate.py as `__main__`:
one table instead of a module per command at the top of the package. A
command at the top (`main`, `bench`) or in a package with a `__main__.py`
(`models`, `checkpoint`, `report`) needs no row. This module imports nothing of
the project, so importing any part of it loads nothing more.
"""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

COMMANDS = {
    "generate": "gan_jax.explore.generate",
    "interpolate": "gan_jax.explore.interpolate",
    "project": "gan_jax.explore.project",
    "nearest": "gan_jax.explore.nearest",
    "reconstruct": "gan_jax.explore.reconstruct",
    "prepare": "gan_jax.data.prepare",
    "input_pipeline": "gan_jax.data.pipeline",
    "evaluate": "gan_jax.eval.evaluate",
    "plots": "gan_jax.monitor.plots",
}


class CommandFinder(importlib.abc.MetaPathFinder):
  """Finds `gan_jax.<command>` as the file of the module that `COMMANDS` names."""

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    package, _, name = fullname.rpartition(".")
    if package != __name__ or name not in COMMANDS:
      return None
    origin = importlib.util.find_spec(COMMANDS[name]).origin
    # The same file under the short name: runpy asks its loader for the code by that name.
    return importlib.util.spec_from_file_location(fullname, origin)


# After the normal finders, so that it only adds names; once, however often this is reloaded.
if not any(type(finder).__name__ == "CommandFinder" for finder in sys.meta_path):
  sys.meta_path.append(CommandFinder())
