"""A training run's report: one HTML file that needs nothing beside it.

  python -m gan_jax.report WORKDIR [--out FILE]

writes WORKDIR/report.html (or FILE): the config in short (its file, the
options that differ from the defaults, model, resolution, batch, steps),
the sample grids over training and the progress GIF, the loss and D-output
curves, FID/KID over steps where the run measured them, collapse warnings and
the run record (run.json: command, versions, devices, git commit). Every
picture is embedded; the page loads nothing from anywhere, so it can be mailed
or archived as one file.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from gan_jax import cli
from gan_jax.report import page, run_files

REPORT_FILE = "report.html"
MAX_GRIDS = 12


def write_report(workdir: str | pathlib.Path, out: str | pathlib.Path | None = None,
                 max_grids: int = MAX_GRIDS) -> pathlib.Path:
  """Write the report of the run in `workdir` to `out` (default WORKDIR/report.html)."""
  run = run_files.read_run(workdir)
  out = pathlib.Path(out) if out else run.workdir / REPORT_FILE
  text = page.render(run, run_files.run_config(run), max_grids)
  out.parent.mkdir(parents=True, exist_ok=True)
  temporary = out.with_name(out.name + ".tmp")
  temporary.write_text(text, encoding="utf-8")
  temporary.replace(out)  # a browser open on the old page never reads half a new one
  return out


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.report", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("workdir", metavar="WORKDIR", help="the --workdir of a training run")
  parser.add_argument("--out", default=None,
                      help=f"the HTML file to write (default: WORKDIR/{REPORT_FILE})")
  parser.add_argument("--max_grids", type=cli.positive_int, default=MAX_GRIDS,
                      help="show at most this many sample grids, evenly spread over training")
  return parser


def run(args: argparse.Namespace) -> None:
  print(write_report(args.workdir, args.out, args.max_grids))


def main(argv: list[str] | None = None) -> int:
  return cli.run_cli(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
