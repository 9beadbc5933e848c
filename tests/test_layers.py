"""The layers of gan_jax (docs/architecture.md), checked on the source's imports.

Every module under gan_jax/ is parsed (nothing is imported, so this takes a
fraction of a second); its project imports, including those inside functions,
form a graph, and each rule below must hold for every import chain: a module
may not reach a forbidden module directly or through others.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import pathlib

import pytest

PACKAGE = "gan_jax"
PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1] / PACKAGE


@dataclasses.dataclass(frozen=True)
class Rule:
  """Modules under any of `modules` may not import modules under `forbidden`,
  except those under `allowed`; modules under `exempt` are not checked."""
  why: str
  modules: tuple[str, ...]
  forbidden: tuple[str, ...]
  allowed: tuple[str, ...] = ()
  exempt: tuple[str, ...] = ()


# A prefix covers the module of that name and every module below it.
STEP = ("gan_jax.training.step", "gan_jax.training.updates", "gan_jax.training.techniques",
        "gan_jax.training.vaegan_step")
INFRASTRUCTURE = ("gan_jax.parallel", "gan_jax.distributed", "gan_jax.data", "gan_jax.monitor",
                  "gan_jax.workdir_lock", "gan_jax.run_record")
RULES = (
    Rule("the error module is the leaf every layer imports", ("gan_jax.errors",),
         forbidden=("gan_jax",)),
    # models/__main__.py is the `python -m gan_jax.models` command: it builds a
    # GAN and its state to count parameters, and nothing imports it, so its
    # imports add nothing to what importing gan_jax.models loads.
    Rule("models know only models and the errors", ("gan_jax.models",), forbidden=("gan_jax",),
         allowed=("gan_jax.models", "gan_jax.errors"), exempt=("gan_jax.models.__main__",)),
    Rule("data and monitoring know no models and no training", ("gan_jax.data", "gan_jax.monitor"),
         forbidden=("gan_jax.models", "gan_jax.training")),
    Rule("the step knows no data, checkpoints or monitoring", STEP,
         forbidden=("gan_jax.data", "gan_jax.checkpoint", "gan_jax.monitor")),
    Rule("infrastructure raises gan_jax.errors, without the config code", INFRASTRUCTURE,
         forbidden=("gan_jax.config",)),
)


def under(module: str, prefixes: tuple[str, ...]) -> bool:
  """Whether `module` is one of `prefixes` or inside one of them."""
  return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def module_files(package_dir: pathlib.Path = PACKAGE_DIR) -> dict[str, pathlib.Path]:
  """Module name -> source file, for every module of the package (packages by their __init__)."""
  modules = {}
  for path in sorted(package_dir.rglob("*.py")):
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    modules[".".join(parts)] = path
  return modules


def project_imports(source: str, module: str, is_package: bool, known: set[str]) -> list[str]:
  """The project modules `source` (the text of `module`) imports, wherever the import stands.

  `from gan_jax.pkg import name` is the module gan_jax.pkg.name when that is a
  module in `known`, else gan_jax.pkg (the name is an attribute of it).
  """
  imported = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      imported += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: `from . import x`, `from ..pkg import y`
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = ".".join(package[:len(package) + 1 - node.level])
        base = f"{package}.{base}" if base else package
      for alias in node.names:
        name = f"{base}.{alias.name}"
        imported.append(name if name in known else base)
  return [name for name in imported if under(name, (PACKAGE,))]


def import_graph(package_dir: pathlib.Path = PACKAGE_DIR) -> dict[str, list[str]]:
  """Module -> the project modules it imports, for the whole package."""
  files = module_files(package_dir)
  known = set(files)
  return {module: project_imports(path.read_text(), module, path.name == "__init__.py", known)
          for module, path in files.items()}


def import_chains(module: str, graph: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
  """Every project module `module` imports, directly or through others, with one
  shortest chain of imports that gets there."""
  chains = {}
  visited = {module}
  queue = collections.deque([(module, ())])
  while queue:
    current, chain = queue.popleft()
    for imported in graph.get(current, ()):
      path = (*chain, imported)
      chains.setdefault(imported, path)
      # Importing a.b.c also runs the __init__ of a and of a.b.
      parts = imported.split(".")
      for name in [".".join(parts[:i]) for i in range(1, len(parts) + 1)]:
        if name not in visited:
          visited.add(name)
          queue.append((name, path))
  return chains


def violations(graph: dict[str, list[str]], rules=RULES) -> list[str]:
  """One line per (module, chain of imports to a module it may not reach)."""
  found = []
  for module in sorted(graph):
    for rule in rules:
      if not under(module, rule.modules) or under(module, rule.exempt):
        continue
      for target, chain in sorted(import_chains(module, graph).items()):
        if under(target, rule.forbidden) and not under(target, rule.allowed):
          found.append(f"{module} imports {' -> '.join(chain)}  ({rule.why})")
  return found


@pytest.fixture(scope="module")
def graph() -> dict[str, list[str]]:
  return import_graph()


def test_the_package_keeps_its_layers(graph):
  assert "gan_jax.models" in graph and "gan_jax.errors" in graph  # the tree was found
  found = violations(graph)
  assert not found, "imports across the layers (docs/architecture.md):\n" + "\n".join(found)


def test_every_rule_names_modules_that_exist(graph):
  # A renamed module must not silently leave a rule checking nothing.
  named = {prefix for rule in RULES for prefix in rule.modules + rule.exempt}
  assert not {prefix for prefix in named if not any(under(m, (prefix,)) for m in graph)}


def with_module(graph, module: str, source: str) -> dict[str, list[str]]:
  """The graph with `module` (real or made up) replaced by a module of text `source`."""
  known = set(graph) | {module}
  return {**graph, module: project_imports(source, module, False, known)}


# Each rule must be able to fail: a made-up module that breaks it, per rule.
BREAKING = [
    ("gan_jax.errors", "from gan_jax import images"),
    ("gan_jax.models.x", "from gan_jax.training import losses"),
    ("gan_jax.models.x", "def build():\n  import gan_jax.parallel\n"),  # inside a function
    ("gan_jax.models.x", "from gan_jax import config"),
    ("gan_jax.data.x", "from gan_jax.training import losses"),
    ("gan_jax.data.x", "from gan_jax.models.dcgan import Generator"),
    ("gan_jax.monitor.x", "from gan_jax import models"),
    ("gan_jax.monitor.x", "from ..training.step import train_step"),  # relative
    ("gan_jax.training.step", "from gan_jax.data import pipeline"),
    ("gan_jax.training.updates", "from gan_jax import checkpoint"),
    ("gan_jax.training.step", "from gan_jax.monitor.monitor import Monitor"),
    ("gan_jax.parallel", "from gan_jax.config.checks import validate_config"),
    ("gan_jax.distributed", "from gan_jax.config import checks"),
    ("gan_jax.data.x", "from .. import config"),
]


def violations_of(module: str, graph: dict[str, list[str]], rules=RULES) -> list[str]:
  """The violations of `module` alone."""
  return [line for line in violations(graph, rules) if line.startswith(module + " ")]


@pytest.mark.parametrize("module, source", BREAKING)
def test_a_forbidden_import_is_found(graph, module, source):
  assert violations_of(module, with_module(graph, module, source)), (
      f"{module}: {source!r} broke no rule")


def test_every_rule_can_fail(graph):
  broken = {rule.why for module, source in BREAKING for rule in RULES
            if violations_of(module, with_module(graph, module, source), [rule])}
  assert broken == {rule.why for rule in RULES}


def test_a_forbidden_module_reached_through_another_is_found(graph):
  graph = with_module(graph, "gan_jax.parallel", "from gan_jax.training import losses")
  graph = with_module(graph, "gan_jax.data.x", "from gan_jax.parallel import BATCH_AXIS")
  assert violations_of("gan_jax.data.x", graph) == ["gan_jax.data.x imports gan_jax.parallel -> gan_jax.training.losses  "
                   "(data and monitoring know no models and no training)"]


@pytest.mark.parametrize("module, source", [
    ("gan_jax.models.x", "from gan_jax.errors import ConfigError\nfrom gan_jax.models import dcgan"),
    ("gan_jax.models.x", "from . import dcgan\nimport jax"),
    ("gan_jax.models.__main__", "from gan_jax.training.gan import GAN"),  # the command
    ("gan_jax.data.x", "from gan_jax.parallel import BATCH_AXIS\nfrom gan_jax import errors"),
    ("gan_jax.training.step", "from gan_jax.training import losses\nfrom gan_jax import images"),
])
def test_allowed_imports_pass(graph, module, source):
  assert not violations_of(module, with_module(graph, module, source))


def test_imports_resolve_to_modules():
  known = {"gan_jax.data", "gan_jax.data.pipeline", "gan_jax.parallel", "gan_jax.training",
           "gan_jax.training.losses"}
  source = ("import os\nimport gan_jax.data.pipeline as p\n"
            "from gan_jax.parallel import BATCH_AXIS\n"
            "from gan_jax import parallel\n"
            "from gan_jax.training import losses, GANLoss\n"
            "def f():\n  from . import pipeline\n  from ..training import losses\n")
  assert project_imports(source, "gan_jax.data.x", False, known) == [
      "gan_jax.data.pipeline", "gan_jax.parallel", "gan_jax.parallel", "gan_jax.training.losses",
      "gan_jax.training", "gan_jax.data.pipeline", "gan_jax.training.losses"]
  assert project_imports("from . import pipeline", "gan_jax.data", True, known) == [
      "gan_jax.data.pipeline"]
