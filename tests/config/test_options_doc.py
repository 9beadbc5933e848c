"""docs/options.md documents every option of gan_jax/config/defaults.py, and only options that
exist."""

import ast
import re

from conftest import REPO_ROOT
from gan_jax.config import defaults
from gan_jax.config.options import flatten_options

DOC = REPO_ROOT / "docs" / "options.md"
# A table row whose first cell names options only: | `a.b` | ... or | `a.b`, `a.c` | ...
OPTION_ROW = re.compile(r"^\|\s*(`[a-z0-9_.]+`(?:\s*,\s*`[a-z0-9_.]+`)*)\s*\|([^|]*)\|")


def documented_options() -> dict[str, str]:
  """Option name -> the default column of its row, over the doc's option tables (the tables
  whose header is '| option | default | ...')."""
  rows, in_option_table = {}, False
  for line in DOC.read_text().splitlines():
    if not line.startswith("|"):
      in_option_table = False
    elif re.match(r"^\|\s*option\s*\|\s*default\s*\|", line):
      in_option_table = True
    elif in_option_table and (match := OPTION_ROW.match(line)):
      for name in re.findall(r"`([a-z0-9_.]+)`", match.group(1)):
        rows[name] = match.group(2).strip()
  return rows


def test_every_option_has_a_row_with_its_default():
  options = flatten_options(defaults.get_config().to_dict())
  rows = documented_options()
  missing = sorted(set(options) - set(rows))
  assert not missing, (f"docs/options.md has no table row for {', '.join(missing)}; add "
                       "'| `NAME` | `DEFAULT` | what it does |' to its tables")
  no_default = sorted(name for name in options if not rows[name])
  assert not no_default, f"docs/options.md gives no default for {', '.join(no_default)}"


def test_every_documented_option_exists():
  options = flatten_options(defaults.get_config().to_dict())
  stale = sorted(set(documented_options()) - set(options))
  assert not stale, f"docs/options.md documents options gan_jax/config/defaults.py lacks: {stale}"


def same_value(text: str, value) -> bool:
  """Whether the doc's written default `text` reads as `value`."""
  if isinstance(value, str):
    return text in (value, repr(value), f'"{value}"')
  try:
    return type(value)(ast.literal_eval(text)) == value  # a literal: 2e-4, 10_000, True
  except (ValueError, SyntaxError):
    return False


def test_single_option_rows_give_the_defaults():
  options = flatten_options(defaults.get_config().to_dict())
  wrong = []
  for name, cell in documented_options().items():
    written = re.fullmatch(r"`([^`]*)`", cell)  # only a cell that is one value, e.g. `0.03`
    if name in options and written and not same_value(written.group(1), options[name]):
      wrong.append(f"{name}: doc {cell}, gan_jax/config/defaults.py {options[name]!r}")
  assert not wrong, wrong
