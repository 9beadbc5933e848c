"""One training run per workdir: WORKDIR/run.lock, held while a run trains.

Two runs in one workdir would overwrite each other's checkpoints, so a second
`python -m gan_jax.main` with the --workdir of a running one stops at once,
naming the running process. The lock is `filelock`'s on WORKDIR/run.lock: an
flock, which the kernel drops when its process ends however it ends (`kill
-9` included); on a file system without flock, filelock's marker file, whose
pid it checks. WORKDIR/run.holder.json names the holder (pid, host, start
time, command) while it runs and is removed when it ends, so a holder file
beside a free lock was left by a run of this host that no longer runs: the
next run takes it over (with a warning) and resumes. A holder file of another
host cannot be checked from here (network file systems do not all pass flocks
between hosts), so a run stops and says so; delete the file if that run has
ended.

A multi-process run (gan_jax/distributed.py) takes one lock for all its
processes: process 0 holds it, and all processes learn from an all-gather
whether it got it, so they stop together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import shlex
import socket
import sys
from typing import Iterator

import filelock
import jax
from absl import logging

from gan_jax import distributed
from gan_jax.errors import WorkdirBusyError

LOCK_FILE = "run.lock"
HOLDER_FILE = "run.holder.json"


@dataclasses.dataclass(frozen=True)
class Holder:
  """The process that holds (or held) a workdir's lock, as its holder file says."""
  pid: int
  host: str
  started: str  # UTC, 'YYYY-MM-DD HH:MM:SS UTC'
  command: str = ""

  @classmethod
  def this_process(cls) -> "Holder":
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return cls(os.getpid(), socket.gethostname(), started, shlex.join(sys.argv))

  @classmethod
  def read(cls, path: pathlib.Path) -> "Holder | None":
    """The holder a holder file names; None for a missing, empty or unreadable file."""
    try:
      fields = json.loads(path.read_text())
      return cls(int(fields["pid"]), str(fields["host"]), str(fields["started"]),
                 str(fields.get("command", "")))
    except (OSError, ValueError, TypeError, KeyError):
      return None

  def describe(self) -> str:
    return f"pid {self.pid} on host {self.host} (started {self.started})"


class WorkdirLock:
  """The exclusive lock of one workdir: `acquire` (raises WorkdirBusyError) and `release`."""

  def __init__(self, workdir: str | pathlib.Path):
    self.workdir = pathlib.Path(workdir)
    self.path = self.workdir / LOCK_FILE
    self.holder_path = self.workdir / HOLDER_FILE
    # timeout=0: a busy workdir is refused at once, never waited for.
    self._lock = filelock.FileLock(self.path, timeout=0, thread_local=False)

  def _busy(self) -> WorkdirBusyError:
    holder = Holder.read(self.holder_path)
    if holder is None:
      return WorkdirBusyError(
          f"{self.workdir} is in use by another training run that is starting ({self.holder_path} "
          "does not name it yet): wait for it to end, or use another --workdir")
    return WorkdirBusyError(
        f"{self.workdir} is in use by the training run of {holder.describe()}: wait for it to "
        f"end, stop it (kill {holder.pid}: it saves a checkpoint and exits, and rerunning "
        "resumes), or use another --workdir")

  def acquire(self) -> Holder | None:
    """Take the lock; returns the holder of a stale lock taken over (None if it was free)."""
    self.workdir.mkdir(parents=True, exist_ok=True)  # a new run's workdir: the lock comes first
    try:
      self._lock.acquire()
    except filelock.Timeout:
      raise self._busy() from None
    previous, me = Holder.read(self.holder_path), Holder.this_process()
    if previous is not None and previous.host != me.host:
      self._lock.release()
      raise WorkdirBusyError(
          f"{self.holder_path} says {self.workdir} is held by the training run of "
          f"{previous.describe()}, and this host ({me.host}) cannot tell whether it still "
          f"runs: if it has ended, delete {self.holder_path} and rerun; else wait for it or use "
          "another --workdir")
    if previous is not None:
      logging.warning("%s was left by the training run of %s, which no longer runs (killed?): "
                      "taking it over", self.holder_path, previous.describe())
    temporary = self.holder_path.with_name(HOLDER_FILE + ".tmp")
    temporary.write_text(json.dumps(dataclasses.asdict(me)))
    os.replace(temporary, self.holder_path)  # a refused run never reads half a file
    return previous

  def release(self) -> None:
    """Remove the holder file and release the lock (nothing when not held)."""
    if not self._lock.is_locked:
      return
    try:
      self.holder_path.unlink(missing_ok=True)  # while still held: no one reads it meanwhile
    finally:
      self._lock.release()

  @property
  def held(self) -> bool:
    return self._lock.is_locked


@contextlib.contextmanager
def hold(workdir: str | pathlib.Path) -> Iterator[None]:
  """Hold `workdir`'s lock for the body, and release it however the body ends.

  With several processes, process 0 takes the lock for all; every process must
  enter at the same point (an all-gather tells the others whether it got it).
  """
  lock = WorkdirLock(workdir) if jax.process_index() == 0 else None
  refused = None
  if lock is not None:
    try:
      lock.acquire()
    except WorkdirBusyError as error:
      refused = error
  if jax.process_count() > 1 and distributed.any_process(refused is not None) and not refused:
    raise WorkdirBusyError(f"process 0 found {workdir} in use by another training run (its "
                           "log names the run): wait for that run to end, or use another "
                           "--workdir")
  if refused is not None:
    raise refused
  try:
    yield
  finally:
    if lock is not None:
      lock.release()
