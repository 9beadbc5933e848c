"""constraints/cpu-py311.txt: this venv's exact versions of what `pip install -e .[test]` needs.

  python constraints/freeze.py [--out constraints/cpu-py311.txt]

`pip freeze` lists everything installed (tools included); this walks the
requirements of pyproject.toml's dependencies and its `test` extra through the
installed packages' metadata (markers evaluated for this interpreter and
machine) and pins each package reached at its installed version.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import pathlib
import platform
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXTRAS = ("test",)


def project_requirements(pyproject: pathlib.Path = ROOT / "pyproject.toml") -> list[Requirement]:
  """pyproject's dependencies and the EXTRAS' ones."""
  project = tomllib.loads(pyproject.read_text())["project"]
  lines = list(project["dependencies"])
  for extra in EXTRAS:
    lines += project["optional-dependencies"][extra]
  return [Requirement(line) for line in lines]


def applies(requirement: Requirement, extras: tuple[str, ...] = ("",)) -> bool:
  if requirement.marker is None:
    return True
  return any(requirement.marker.evaluate({"extra": extra}) for extra in extras)


def closure(requirements: list[Requirement]) -> dict[str, str]:
  """Canonical name -> installed version of every package the requirements reach."""
  pins = {}
  queue = [(requirement, ("",)) for requirement in requirements]
  while queue:
    requirement, extras = queue.pop()
    if not applies(requirement, extras):
      continue
    name = canonicalize_name(requirement.name)
    if name in pins and not requirement.extras:
      continue
    try:
      distribution = importlib.metadata.distribution(requirement.name)
    except importlib.metadata.PackageNotFoundError:
      sys.exit(f"{requirement.name} is required but not installed: pip install -e '.[test]'")
    pins[name] = distribution.version
    wanted = ("", *sorted(requirement.extras))
    queue += [(Requirement(line), wanted) for line in distribution.requires or []]
  return pins


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=pathlib.Path, default=ROOT / "constraints" / "cpu-py311.txt")
  args = parser.parse_args()
  pins = closure(project_requirements())
  pins.pop("gan-jax", None)
  header = (f"# Exact versions for reproductions: pip install -c {args.out.relative_to(ROOT)} "
            "-e '.[test]'\n"
            f"# Python {platform.python_version()}, {platform.system()} {platform.machine()}; "
            "written by constraints/freeze.py (the venv of docs/reproducibility.md)\n")
  args.out.write_text(header + "".join(f"{name}=={pins[name]}\n" for name in sorted(pins)))
  print(f"{len(pins)} pins in {args.out}")


if __name__ == "__main__":
  main()
