"""What a training run prints on the console, and its full log in WORKDIR/log.txt.

The console shows the project's own records (the config, the data, the log
lines of the loop, samples written, warnings) and the libraries' warnings and
errors; the libraries' INFO records (Orbax writes some fifty for every
checkpoint: atomicity, async I/O, array handlers, ...) go only to the log file,
unless `--verbose` asks for them on the console too. WORKDIR/log.txt gets
every record, each with its date and time (appended when a run resumes);
process i > 0 of a multi-host run writes WORKDIR/log.process_i.txt and shows
only warnings on its console.

Console records are written with tqdm.write, so they appear above a progress
bar (`gan_jax.monitor.progress`) instead of through it.

    console = Console(verbose=FLAGS.verbose)         # before anything logs
    ...                                              # e.g. jax.distributed starts
    console.log_to_file(workdir, jax.process_index())

Project and library records both arrive through Python's logging (absl's
`logging.info` is the `absl` logger); a record is the project's when the code
that logged it lies in this package. C++ libraries write their lines to file
descriptor 2 themselves, past Python: TensorFlow's at import ("I0000 ...
port.cc:153] oneDNN custom operations are on ...", which TensorFlow 2.21
prints even at TF_CPP_MIN_LOG_LEVEL=3: it comes through absl's C++ logging). So
`import_quietly` imports TensorFlow once at start-up, while nothing else runs,
with descriptor 2 caught in a file, and hands each line caught to logging as a
record of its own level: INFO to the log file only, warnings and errors to the
console too. Later imports find it loaded. `--verbose` leaves descriptor 2
alone (and the lines on the console).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import logging.handlers
import os
import pathlib
import re
import sys
import tempfile
from typing import IO, Iterator

import tqdm
from absl import logging as absl_logging

PACKAGE_DIR = str(pathlib.Path(__file__).resolve().parent) + os.sep
LOG_FILE = "log.txt"
FILE_FORMAT = "%(asctime)s %(levelname)s %(filename)s:%(lineno)d] %(message)s"
# A line of absl's (and TensorFlow's) C++ logging: "I0000 00:00:1796064083.501427   29531
# port.cc:153] oneDNN custom ...": level letter, date, time, thread, file:line, message.
NATIVE_LINE = re.compile(r"([IWEF])\d{4} [\d:.]+ +\d+ ([^\s:\]]+):(\d+)\] ?(.*)")
NATIVE_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR,
                 "F": logging.CRITICAL}
# absl's C++ logging says this once per library before its first line: INFO, not a warning.
ABSL_PREAMBLE = "All log messages before absl::InitializeLog() is called"
# A Python warning that the warnings module writes to stderr: "path.py:12: UserWarning: ...".
PYTHON_WARNING = re.compile(r"(\S+\.py):(\d+): (\w*Warning: .*)")
NATIVE_LOGGER = "native"  # not "tensorflow": TensorFlow may give that logger a handler of its own


def log_file_name(process_index: int) -> str:
  """log.txt for process 0, log.process_<i>.txt for the others (one file per writer)."""
  return LOG_FILE if process_index == 0 else f"log.process_{process_index}.txt"


def log_native_lines(text: str, logger_name: str = NATIVE_LOGGER) -> None:
  """Hand what C++ code wrote to stderr to logging, one record per line of its log format.

  A Python warning is a WARNING record. A line of another form continues the
  record before it (TensorFlow's messages span lines); one before any record
  is a WARNING record of its own, since nothing says it is chatter.
  """
  logger = logging.getLogger(logger_name)
  records: list[list] = []  # [level, file, line, message lines]
  for line in text.splitlines():
    match = NATIVE_LINE.match(line)
    if match:
      level, file, number, message = match.groups()
      records.append([NATIVE_LEVELS[level], file, int(number), [message]])
    elif match := PYTHON_WARNING.match(line):
      file, number, message = match.groups()
      records.append([logging.WARNING, os.path.basename(file), int(number), [message]])
    elif ABSL_PREAMBLE in line:
      records.append([logging.INFO, "absl", 0, [line]])
    elif records and records[-1][1] != "absl":
      records[-1][3].append(line)
    elif line.strip():
      records.append([logging.WARNING, "stderr", 0, [line]])
  for level, file, number, lines in records:
    # Built by hand: the record's file is the C++ one, so it reads as the library's, not ours.
    logger.handle(logger.makeRecord(logger_name, level, file, number, "%s", ("\n".join(lines),),
                                    None))


@contextlib.contextmanager
def native_stderr_to_log() -> Iterator[None]:
  """What the body writes to file descriptor 2 becomes log records (`log_native_lines`).

  For single-threaded moments only: anything else written to stderr
  meanwhile is caught too. Python's own writes are flushed into the file.
  """
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:  # no descriptor 2 (started with stderr closed): nothing to catch
    yield
    return
  with tempfile.TemporaryFile() as caught:
    os.dup2(caught.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      caught.seek(0)
      log_native_lines(caught.read().decode("utf-8", errors="replace"))


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
    if record.levelno >= logging.WARNING:
      return True
    if self.warnings_only:
      return False
    return self.verbose or is_project_record(record)


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
    self.handler.setFormatter(absl_logging.PythonFormatter())  # the lines absl printed
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

  def import_quietly(self, module: str = "tensorflow") -> None:
    """Import `module` now, its C++ libraries' stderr lines turned into log records.

    Only a module that the run would import anyway (installed, not yet
    imported or blocked): a failed import is left for the code that needs the
    module to meet and handle as it always did. Nothing when verbose.
    """
    if self.filter.verbose or module in sys.modules or importlib.util.find_spec(module) is None:
      return
    with native_stderr_to_log():
      try:
        importlib.import_module(module)
      except Exception as error:  # pylint: disable=broad-except
        logging.getLogger(NATIVE_LOGGER).info("importing %s at start-up failed: %r", module,
                                              error)

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
