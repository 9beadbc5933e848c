"""What a report reads from a run's work directory, and the facts it draws from them.

Only files the run wrote are read (metrics.jsonl, samples/step_*.png,
plots/progress.gif, run.json, log.txt); nothing in the directory is changed.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any

import numpy as np

from gan_jax import run_record
from gan_jax.config import resume
from gan_jax.config.options import flatten_options
from gan_jax.console import LOG_FILE
from gan_jax.errors import DataError
from gan_jax.monitor import plots
from gan_jax.monitor.writer import METRICS_FILE, SAMPLES_DIR

PROGRESS_GIF = pathlib.Path(plots.PLOTS_DIR) / "progress.gif"
# The detectors' flags in metrics.jsonl (monitor/monitor.py): 1.0 while a detector holds.
DETECTORS = {"collapse/d_overpowering": "discriminator overpowering the generator",
             "collapse/mode_collapse": "mode collapse (samples far less varied than real faces)"}
# What the monitor's warnings in log.txt say (monitor/collapse.py, monitor/monitor.py).
WARNING_PHRASES = ("discriminator overpowering", "mode collapse", "non-finite losses",
                   "stopping training")
LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR) [^\]]*\] (.*)$")


@dataclasses.dataclass
class RunFiles:
  """A run's files, read once."""
  workdir: pathlib.Path
  records: list[dict]                    # metrics.jsonl in step order
  grids: list[tuple[int, pathlib.Path]]  # (step, sample grid), in step order
  gif: pathlib.Path | None               # the progress GIF, when the run drew one
  starts: list[dict]                     # run.json: one record per start, the latest last
  log_warnings: list[str]                # the collapse warnings in log.txt


def read_run(workdir: str | pathlib.Path) -> RunFiles:
  """The run's files; DataError when `workdir` is missing or holds no training run."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise DataError(f"{workdir} is not a directory; pass the --workdir of a training run")
  metrics = workdir / METRICS_FILE
  run = RunFiles(
      workdir=workdir,
      records=plots.read_metrics(metrics) if metrics.is_file() else [],
      grids=plots.sample_grids(workdir / SAMPLES_DIR),
      gif=workdir / PROGRESS_GIF if (workdir / PROGRESS_GIF).is_file() else None,
      starts=run_record.read(workdir),
      log_warnings=log_warnings(workdir / LOG_FILE))
  if not (run.records or run.grids or run.starts):
    raise DataError(f"{workdir} has no {METRICS_FILE}, samples/step_*.png or "
                    f"{run_record.RUN_RECORD}; pass the --workdir of a training run")
  return run


def log_warnings(path: pathlib.Path) -> list[str]:
  """The monitor's collapse and divergence warnings in log.txt, with their date and time."""
  if not path.is_file():
    return []
  found = []
  for line in path.read_text(errors="replace").splitlines():
    match = LOG_LINE.match(line)
    if match and any(phrase in match.group(2) for phrase in WARNING_PHRASES):
      found.append(f"{line[:19]} {match.group(2)}")
  return found


def select_grids(grids: list, count: int) -> list:
  """At most `count` of `grids`, evenly spread, always with the first and the last."""
  if len(grids) <= count:
    return list(grids)
  picks = np.unique(np.linspace(0, len(grids) - 1, count).round().astype(int))
  return [grids[i] for i in picks]


def last_step(run: RunFiles) -> int | None:
  """The last step the run logged or sampled."""
  steps = [r["step"] for r in run.records] + [step for step, _ in run.grids]
  return max(steps, default=None)


def collapse_episodes(records: list[dict]) -> list[tuple[str, int, int | None]]:
  """(what, first step, last step or None while it still held) of each time a detector fired."""
  episodes = []
  for name, what in DETECTORS.items():
    start = previous = None
    for record in records:
      if name not in record:
        continue
      if record[name] and start is None:
        start = record["step"]
      elif not record[name] and start is not None:
        episodes.append((what, start, previous))
        start = None
      previous = record["step"]
    if start is not None:
      episodes.append((what, start, None))
  return sorted(episodes, key=lambda episode: episode[1])


def non_finite_steps(records: list[dict]) -> list[tuple[int, float]]:
  """(log step, share of the interval's steps with non-finite losses) where it was not 0."""
  return [(r["step"], r["collapse/non_finite"]) for r in records
          if r.get("collapse/non_finite")]


def run_config(run: RunFiles) -> dict[str, Any] | None:
  """The resolved config of the latest start (run.json), else the latest checkpoint's, with
  the options added since it was written at their defaults (`defaults.with_defaults`)."""
  for start in reversed(run.starts):
    if isinstance(start.get("config"), dict):
      return resume.with_defaults(start["config"])
  if not (run.workdir / "checkpoints").is_dir():
    return None
  from gan_jax import checkpoint  # Orbax and JAX: only for runs from before run.json
  try:
    return resume.with_defaults(
        json.loads(json.dumps(checkpoint.load_config(run.workdir).to_dict(), default=str)))
  except Exception:  # noqa: BLE001 - a damaged checkpoint: the report goes on without it
    return None


def config_file(run: RunFiles) -> str | None:
  """The --config file of the latest start's command line."""
  from gan_jax.config import options  # pylint: disable=import-outside-toplevel
  return options.config_file_argument(run.starts[-1].get("command", []) if run.starts else [])


def changed_options(config: dict[str, Any]) -> list[tuple[str, Any, Any]]:
  """(option, the run's value, the default) for every option that differs from its default."""
  defaults = resume.with_defaults({})  # the defaults laid over nothing
  # Through JSON, as run.json stores the config: tuples read as lists on both sides.
  defaults = flatten_options(json.loads(json.dumps(defaults, default=str)))
  missing = "(not an option today)"
  return [(name, value, defaults.get(name, missing))
          for name, value in flatten_options(config).items()
          if defaults.get(name, missing) != value]


def key_facts(run: RunFiles, config: dict[str, Any] | None) -> list[tuple[str, str]]:
  """(label, value) rows: model, resolution, batch, steps, what it trained on."""
  done = last_step(run)
  if config is None:
    return [("steps", f"{done} logged")] if done is not None else []
  option = flatten_options(config)
  batch = option.get("train.batch_size")
  facts = [
      ("model", f"{option.get('model.name')}, latent {option.get('model.latent_dim')}, "
                f"width {option.get('model.width')}"),
      ("resolution", f"{option.get('data.resolution')} px"),
      ("batch", str(batch)),
      ("steps", f"{done if done is not None else 0} of {option.get('train.num_steps')}"
                + (f" ({done * batch:,} images seen)" if done and batch else "")),
      ("loss", str(option.get("loss.name"))),
      ("data", str(option.get("data.path")) or "(none)"),
      ("seed", str(option.get("seed")))]
  if run.starts:
    device = run.starts[-1].get("devices") or {}
    facts.append(("devices", f"{device.get('count')} x {device.get('kind')}"))
  return facts
