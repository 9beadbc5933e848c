"""What a training run prints on the console, and its full log in WORKDIR/log.txt.

The console is for a person: each line is the time of day and the message
(`16:20:33 step 200/20520 d_loss=... | 330 img/s, eta 0:32:53`), with the
level for warnings and errors and, for a library's record, its file and line.
It shows the project's own records and the libraries' warnings and errors;
the libraries' INFO records (Orbax writes some fifty for every checkpoint) go
only to the log file, unless `--verbose` asks for them on the console too, and
a record logged with `extra=FILE_ONLY` (the full config) goes only there.
WORKDIR/log.txt gets every record, each with its date and time (appended when
a run resumes); process i > 0 of a multi-host run writes
WORKDIR/log.process_i.txt and shows only warnings on its console.

Console records are written with tqdm.write, so they appear above a progress
bar (`gan_jax.monitor.progress`) instead of through it.

    console = Console(verbose=FLAGS.verbose)         # before anything logs
    ...                                              # e.g. jax.distributed starts
    console.log_to_file(workdir, jax.process_index())

Project and library records both arrive through Python's logging (absl's
`logging.info` is the `absl` logger); a record is the project's when the code
that logged it lies in this package.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import pathlib
import sys
from typing import IO

import tqdm
from absl import logging as absl_logging

PACKAGE_DIR = str(pathlib.Path(__file__).resolve().parent) + os.sep
LOG_FILE = "log.txt"
FILE_FORMAT = "%(asctime)s %(levelname)s %(filename)s:%(lineno)d] %(message)s"
CONSOLE_TIME = "%H:%M:%S"
# logging.info(..., extra=FILE_ONLY): a record for WORKDIR/log.txt only (the full config).
FILE_ONLY = {"file_only": True}


def log_file_name(process_index: int) -> str:
  """log.txt for process 0, log.process_<i>.txt for the others (one file per writer)."""
  return LOG_FILE if process_index == 0 else f"log.process_{process_index}.txt"


def is_project_record(record: logging.LogRecord) -> bool:
  """Whether gan_jax logged `record` (through absl's logger or a `gan_jax.*` one)."""
  return record.name.startswith("gan_jax") or record.pathname.startswith(PACKAGE_DIR)


class ConsoleFilter(logging.Filter):
  """Warnings and errors always; INFO when the project logged it, or everything when verbose."""

  def __init__(self, verbose: bool = False):
    super().__init__()
    self.verbose = verbose
    self.warnings_only = False  # processes other than 0: one console to read

  def filter(self, record: logging.LogRecord) -> bool:
    if getattr(record, "file_only", False):
      return False
    if record.levelno >= logging.WARNING:
      return True
    if self.warnings_only:
      return False
    return self.verbose or is_project_record(record)


class ConsoleFormatter(logging.Formatter):
  """'16:20:33 message'; 'WARNING' after the time above INFO; 'file.py:12]' for a library's."""

  def __init__(self):
    super().__init__("%(message)s", datefmt=CONSOLE_TIME)

  def format(self, record: logging.LogRecord) -> str:
    head = [self.formatTime(record, self.datefmt)]
    if record.levelno > logging.INFO:
      head.append(record.levelname)
    if not is_project_record(record):  # whose record it is: the project's need no name
      head.append(f"{record.filename}:{record.lineno}]")
    return " ".join(head) + " " + super().format(record)


class ConsoleHandler(logging.StreamHandler):
  """Writes each record with tqdm.write: a progress bar is cleared, the line printed, the bar redrawn."""

  def emit(self, record: logging.LogRecord) -> None:
    try:
      tqdm.tqdm.write(self.format(record), file=self.stream)
    except RecursionError:
      raise
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


class Console:
  """The console and log-file handlers of one command, on the root logger.

  Replaces absl's handler (which prints every record) while installed;
  `close` puts it back, so an in-process caller keeps its logging.
  """

  def __init__(self, verbose: bool = False, stream: IO | None = None):
    self.filter = ConsoleFilter(verbose)
    self.handler = ConsoleHandler(sys.stderr if stream is None else stream)
    self.handler.setFormatter(ConsoleFormatter())
    self.handler.addFilter(self.filter)
    # Records logged before the workdir's file is open wait here for it.
    self._pending = logging.handlers.MemoryHandler(capacity=10_000,
                                                   flushLevel=logging.CRITICAL + 1)
    self.file_handler: logging.FileHandler | None = None
    self._replaced = [h for h in logging.root.handlers if h is absl_logging.get_absl_handler()]
    for handler in self._replaced:
      logging.root.removeHandler(handler)
    logging.root.addHandler(self.handler)
    logging.root.addHandler(self._pending)

  def log_to_file(self, workdir: str | os.PathLike, process_index: int = 0) -> pathlib.Path:
    """Append every record to WORKDIR/log.txt (log.process_i.txt), from the first one logged."""
    path = pathlib.Path(workdir) / log_file_name(process_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    self.file_handler = logging.FileHandler(path, encoding="utf-8")
    self.file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
    logging.root.addHandler(self.file_handler)
    self._pending.setTarget(self.file_handler)
    self._pending.flush()
    logging.root.removeHandler(self._pending)
    return path

  def show_warnings_only(self) -> None:
    """From now on only warnings and errors on the console (processes other than 0)."""
    self.filter.warnings_only = True

  def close(self) -> None:
    """Flush and remove this console's handlers; absl's handler comes back."""
    for handler in (self.handler, self._pending, self.file_handler):
      if handler is not None:
        logging.root.removeHandler(handler)
        handler.close()
    for handler in self._replaced:
      logging.root.addHandler(handler)
    self._replaced = []
