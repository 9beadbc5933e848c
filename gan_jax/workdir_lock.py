"""One training run per workdir: WORKDIR/run.lock, held while a run trains.

Two runs in one workdir would overwrite each other's checkpoints, so a second
`python -m gan_jax.main` with the --workdir of a running one stops at once,
naming the running process. The lock is an exclusive `flock` on
WORKDIR/run.lock, whose text says who holds it (pid, host, start time,
command). The kernel drops a flock when its process ends, however it ends
(`kill -9` included), so a lock file whose flock is free was left by a run of
this host that no longer runs: the next run takes it over (with a warning)
and resumes. A file left by a process on another host cannot be checked from
here (network file systems do not all pass flocks between hosts), so a run
stops and says so; delete the file if that run has ended. On a file system
without flock the holder's pid is checked instead (a race of two starts at
the same instant is then not caught).

A multi-process run (gan_jax/distributed.py) takes one lock for all its
processes: process 0 holds it, and all processes learn from an all-gather
whether it got it, so they stop together.

`hold` nests: gan_jax/main.py takes the lock before it opens WORKDIR/log.txt
(so a refused run does not write into the running one's log) and the trainer
takes it again inside; the inner `hold` of the thread that holds the lock does
nothing. Another thread, or another object, is refused as another process is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import pathlib
import shlex
import socket
import sys
import threading
from typing import Iterator

import jax
from absl import logging

from gan_jax import distributed
from gan_jax.errors import WorkdirBusyError

LOCK_FILE = "run.lock"
# Workdirs (resolved) whose lock a `hold` of this process has, and the thread that entered it.
_held_by: dict[pathlib.Path, int] = {}


@dataclasses.dataclass(frozen=True)
class Holder:
  """The process that holds (or held) a workdir's lock, as its lock file says."""
  pid: int
  host: str
  started: str  # UTC, 'YYYY-MM-DD HH:MM:SS UTC'
  command: str = ""

  @classmethod
  def this_process(cls) -> "Holder":
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return cls(os.getpid(), socket.gethostname(), started, shlex.join(sys.argv))

  @classmethod
  def parse(cls, text: str) -> "Holder | None":
    """The holder a lock file names; None for an empty or unreadable file."""
    try:
      fields = json.loads(text)
      return cls(int(fields["pid"]), str(fields["host"]), str(fields["started"]),
                 str(fields.get("command", "")))
    except (ValueError, TypeError, KeyError):
      return None

  def describe(self) -> str:
    return f"pid {self.pid} on host {self.host} (started {self.started})"


def pid_alive(pid: int) -> bool:
  """Whether a process `pid` runs on this host (signal 0 checks without sending)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # it runs, as another user
    return True
  return True


def _read(fd: int) -> str:
  os.lseek(fd, 0, os.SEEK_SET)
  chunks = []
  while chunk := os.read(fd, 65536):
    chunks.append(chunk)
  return b"".join(chunks).decode("utf-8", errors="replace")


class WorkdirLock:
  """The exclusive lock of one workdir: `acquire` (raises WorkdirBusyError) and `release`."""

  def __init__(self, workdir: str | pathlib.Path):
    self.workdir = pathlib.Path(workdir)
    self.path = self.workdir / LOCK_FILE
    self._fd: int | None = None

  def _busy(self, holder: Holder | None) -> WorkdirBusyError:
    if holder is None:
      return WorkdirBusyError(
          f"{self.workdir} is in use by another training run that is starting ({self.path} "
          "does not name it yet): wait for it to end, or use another --workdir")
    return WorkdirBusyError(
        f"{self.workdir} is in use by the training run of {holder.describe()}: wait for it to "
        f"end, stop it (kill {holder.pid}: it saves a checkpoint and exits, and rerunning "
        "resumes), or use another --workdir")

  def _open_locked(self) -> tuple[int, bool]:
    """(descriptor of the lock file, whether flock holds it); raises when another holds it."""
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        flocked = True
      except BlockingIOError:
        holder = Holder.parse(_read(fd))
        os.close(fd)
        raise self._busy(holder) from None
      except OSError:  # a file system without flock: the pid check below decides
        flocked = False
      try:  # a holder that released it between our open and flock unlinked this file
        if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
          return fd, flocked
      except FileNotFoundError:
        pass
      os.close(fd)

  def acquire(self) -> Holder | None:
    """Take the lock; returns the holder of a stale lock taken over (None if it was free)."""
    if self._fd is not None:
      raise RuntimeError(f"{self.path} is already held by this object")
    self.workdir.mkdir(parents=True, exist_ok=True)  # a new run's workdir: the lock comes first
    fd, flocked = self._open_locked()
    me = Holder.this_process()
    previous = Holder.parse(_read(fd))
    if previous is not None and previous.host != me.host:
      os.close(fd)
      raise WorkdirBusyError(
          f"{self.path} says {self.workdir} is held by the training run of "
          f"{previous.describe()}, and this host ({me.host}) cannot tell whether it still "
          f"runs: if it has ended, delete {self.path} and rerun; else wait for it or use "
          "another --workdir")
    if (previous is not None and not flocked and previous.pid != me.pid
        and pid_alive(previous.pid)):
      os.close(fd)
      raise self._busy(previous)
    if previous is not None:
      logging.warning("%s was left by the training run of %s, which no longer runs (killed?): "
                      "taking it over", self.path, previous.describe())
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(dataclasses.asdict(me)).encode())
    os.fsync(fd)
    self._fd = fd
    return previous

  def release(self) -> None:
    """Remove the lock file and drop the flock (nothing when not held)."""
    if self._fd is None:
      return
    fd, self._fd = self._fd, None
    try:
      if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
        os.unlink(self.path)  # before the flock goes: a waiter then sees another inode
    except FileNotFoundError:
      pass
    finally:
      os.close(fd)

  @property
  def held(self) -> bool:
    return self._fd is not None


@contextlib.contextmanager
def hold(workdir: str | pathlib.Path) -> Iterator[None]:
  """Hold `workdir`'s lock for the body, and release it however the body ends.

  With several processes, process 0 takes the lock for all; every process must
  enter at the same point (an all-gather tells the others whether it got it).
  """
  key = pathlib.Path(workdir).resolve()
  if _held_by.get(key) == threading.get_ident():  # an outer `hold` of this thread has it
    yield
    return
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
  _held_by[key] = threading.get_ident()
  try:
    yield
  finally:
    del _held_by[key]
    if lock is not None:
      lock.release()
