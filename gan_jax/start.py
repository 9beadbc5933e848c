"""A training start: what the process owns, set up once, then the training loop.

`run` checks the config, then takes the workdir's lock (workdir_lock.py),
opens WORKDIR/log.txt (console.py), logs the start and appends it to
WORKDIR/run.json (run_record.py), each once and in that order, and hands the
rest to `train.train_and_evaluate`, which only trains. A config that cannot
train stops before the workdir gets anything; a run refused by the lock (another
one trains in this workdir) writes nothing there either: its records wait in
memory and are dropped. `gan_jax.main` calls `run` with its flags; tests and
notebooks call it in-process.
"""

from __future__ import annotations

import pathlib

import jax
import ml_collections
from absl import logging

from gan_jax import console, distributed, run_record, train, workdir_lock
from gan_jax.config import checks, no_effect


def log_start(config: ml_collections.ConfigDict, config_source: str | None) -> None:
  """The start's lines: the config by its file and overrides (all of it: log.txt), and a warning
  for each option that the rest of the config leaves without effect."""
  if config_source:  # the whole config is for the file and run.json, not for a person's screen
    logging.info("config %s (every option: log.txt, run.json)", config_source)
  logging.info("config:\n%s", config, extra=console.FILE_ONLY)
  for line in no_effect.option_warnings(config):  # options the rest of the config makes inert
    logging.warning("%s", line)


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
        run_console: console.Console | None = None, config_source: str | None = None):
  """Train the GAN that `config` describes in `workdir`: the start's set-up once, then the loop.

  `run_console` (gan_jax.main's) gets WORKDIR/log.txt once the lock is held;
  `config_source` names the config file and its overrides on the console.
  Returns the final state.
  """
  # A config that cannot train stops here, before the workdir gets a lock, a log or run.json.
  checks.check_start(config, jax.device_count())
  # One run per workdir: a second stops here, naming the first; the lock is released however
  # training ends.
  with workdir_lock.hold(workdir):
    if run_console is not None:
      run_console.log_to_file(workdir, jax.process_index())
    logging.info("%s", distributed.describe())  # on each process's console: which one it is
    if run_console is not None and jax.process_index() != 0:
      run_console.show_warnings_only()  # one console to read; warnings still come from all
    log_start(config, config_source)
    run_record.append(workdir, config)
    return train.train_and_evaluate(config, workdir)
