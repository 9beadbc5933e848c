"""One training run per workdir (gan_jax/workdir_lock.py).

The first tests take and release locks in this process. The last ones run
`python -m gan_jax.main` in subprocesses (tiny config, 256 synthetic 8 px
images, 20 steps, one CPU device, TensorFlow blocked, one shared XLA cache,
`nice -n 15`): a second run in a busy workdir stops at once and the first
loses nothing; a killed run's lock is taken over and the run resumes. A run
is held in the middle (after its step-10 checkpoint) by a test-only wrapper of
`checkpoint.save` until the test lets it go, so no timing decides anything.
"""

import errno
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from filelock._native import _unix as filelock_unix

from conftest import REPO_ROOT, subprocess_env
from gan_jax import checkpoint, distributed, run_record, workdir_lock
from gan_jax.errors import WorkdirBusyError

HOST = socket.gethostname()
STEPS, PAUSE_AT = 20, 10
# Blocks TensorFlow (as on the GPU machines); with PAUSE_AT set, the run waits after that
# step's checkpoint is on disk until the file GATE exists, having written the file PAUSED.
LAUNCH = """
import os, pathlib, runpy, sys, time
sys.modules['tensorflow'] = None
if os.environ.get('PAUSE_AT'):
  from gan_jax import checkpoint
  save = checkpoint.save
  def save_then_wait(manager, *args, **kwargs):
    save(manager, *args, **kwargs)
    if kwargs.get('step') == int(os.environ['PAUSE_AT']):
      manager.wait_until_finished()
      pathlib.Path(os.environ['PAUSED']).touch()
      while not pathlib.Path(os.environ['GATE']).exists():
        time.sleep(0.05)
  checkpoint.save = save_then_wait
runpy.run_module('gan_jax.main', run_name='__main__', alter_sys=True)
"""


def dead_pid() -> int:
  """The pid of a process of this host that has ended."""
  process = subprocess.Popen(["true"])
  process.wait()
  return process.pid


def write_holder(workdir: pathlib.Path, pid: int, host: str = HOST) -> None:
  """A holder file as a run that ended without releasing the lock (killed) leaves it."""
  (workdir / workdir_lock.HOLDER_FILE).write_text(
      json.dumps({"pid": pid, "host": host, "started": "2026-11-30 12:00:00 UTC",
                  "command": "python -m gan_jax.main"}))


def test_a_held_workdir_is_refused_with_its_holder_then_free_again(tmp_path):
  first = workdir_lock.WorkdirLock(tmp_path)
  assert first.acquire() is None
  saved = json.loads((tmp_path / "run.holder.json").read_text())
  assert (saved["pid"], saved["host"]) == (os.getpid(), HOST)
  with pytest.raises(WorkdirBusyError) as refused:
    workdir_lock.WorkdirLock(tmp_path).acquire()  # flocks are per open file: refused here too
  message = str(refused.value)
  assert "\n" not in message
  assert f"in use by the training run of pid {os.getpid()} on host {HOST} (started " in message
  assert saved["started"] in message and "use another --workdir" in message
  first.release()
  assert not (tmp_path / "run.holder.json").exists()  # run.lock stays: filelock's, free
  second = workdir_lock.WorkdirLock(tmp_path)
  assert second.acquire() is None and second.held
  second.release()


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
  pid = dead_pid()
  write_holder(tmp_path, pid)
  lock = workdir_lock.WorkdirLock(tmp_path)
  previous = lock.acquire()
  assert (previous.pid, previous.host) == (pid, HOST)
  assert json.loads((tmp_path / "run.holder.json").read_text())["pid"] == os.getpid()
  assert f"pid {pid} on host {HOST}" in caplog.text and "taking it over" in caplog.text
  lock.release()


def test_an_unreadable_holder_file_with_a_free_lock_is_taken_over(tmp_path):
  (tmp_path / "run.holder.json").write_text("{half a reco")
  lock = workdir_lock.WorkdirLock(tmp_path)
  assert lock.acquire() is None and lock.held
  lock.release()


def test_a_lock_of_another_host_is_not_guessed_at(tmp_path):
  write_holder(tmp_path, 4242, host="node-17")
  lock = workdir_lock.WorkdirLock(tmp_path)
  with pytest.raises(WorkdirBusyError) as refused:
    lock.acquire()
  message = str(refused.value)
  assert "pid 4242 on host node-17" in message and f"this host ({HOST}) cannot tell" in message
  assert f"delete {tmp_path / 'run.holder.json'} and rerun" in message and "\n" not in message
  assert json.loads((tmp_path / "run.holder.json").read_text())["host"] == "node-17"  # as it was
  assert not lock.held


@pytest.mark.filterwarnings("ignore:flock not supported:UserWarning")  # filelock's, expected
def test_without_flock_a_live_holder_is_refused_and_a_dead_one_taken_over(tmp_path, monkeypatch):
  def no_flock(fd):
    raise OSError(errno.ENOSYS, "Function not implemented")
  # A file system without flock: filelock falls back to its marker file, whose pid it checks.
  monkeypatch.setattr(filelock_unix, "lock_fd_nonblocking", no_flock)
  first = workdir_lock.WorkdirLock(tmp_path)
  assert first.acquire() is None
  with pytest.raises(WorkdirBusyError, match=f"pid {os.getpid()} on host"):
    workdir_lock.WorkdirLock(tmp_path).acquire()
  marker = (tmp_path / "run.lock").read_text()
  assert marker.startswith(f"{os.getpid()}\n")  # filelock's marker: pid, host, start
  first.release()
  pid = dead_pid()  # as a killed run leaves them: the marker and the holder file
  (tmp_path / "run.lock").write_text(marker.replace(str(os.getpid()), str(pid), 1))
  write_holder(tmp_path, pid)
  lock = workdir_lock.WorkdirLock(tmp_path)
  assert lock.acquire().pid == pid
  lock.release()


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_hold_releases_the_lock_however_the_run_ends(tmp_path, exception):
  with pytest.raises(exception):
    with workdir_lock.hold(tmp_path):
      assert (tmp_path / "run.holder.json").exists()
      raise exception("training failed")
  assert not (tmp_path / "run.holder.json").exists()
  with workdir_lock.hold(tmp_path):
    pass
  assert not (tmp_path / "run.holder.json").exists()


def test_hold_is_taken_once_and_refuses_a_second_hold_and_other_threads(tmp_path):
  workdir = tmp_path / "new" / "run"  # made by the lock: it comes before anything else
  refusals = []

  def another_thread():
    try:
      with workdir_lock.hold(workdir):
        pass
    except WorkdirBusyError as error:
      refusals.append(error)

  with workdir_lock.hold(workdir):
    assert (workdir / "run.holder.json").exists()
    with pytest.raises(WorkdirBusyError, match=f"pid {os.getpid()}"):
      with workdir_lock.hold(workdir):  # the start takes it once; a second hold is another run
        pass
    assert (workdir / "run.holder.json").exists()  # the refused one released nothing
    thread = threading.Thread(target=another_thread)
    thread.start()
    thread.join()
    assert len(refusals) == 1 and f"pid {os.getpid()}" in str(refusals[0])
  assert not (workdir / "run.holder.json").exists()


def test_a_refused_run_writes_nothing_into_the_workdir(tmp_path):
  """The second run stops at the lock, before WORKDIR/log.txt, run.json or anything is written."""
  (tmp_path / "log.txt").write_text("the running run's line\n")
  before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
  held = workdir_lock.WorkdirLock(tmp_path)
  held.acquire()
  try:
    result = subprocess.run(
        [sys.executable, "-m", "gan_jax.main", "--config", "configs/tiny.py",
         f"--workdir={tmp_path}", f"--config.data.path={tmp_path / 'no_faces'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"})
    holder_text = (tmp_path / "run.holder.json").read_bytes()
  finally:
    held.release()
  assert result.returncode == 1, result.stderr[-3000:]
  assert result.stderr.splitlines()[-1].startswith(
      f"error: {tmp_path} is in use by the training run of pid {os.getpid()} on host {HOST}")
  assert json.loads(holder_text)["pid"] == os.getpid()  # the holder's, not overwritten
  after = {path.name: path.read_bytes() for path in tmp_path.iterdir()
           if path.name != "run.lock"}  # the holder's lock file (filelock's), left in place
  assert after == before  # log.txt as it was; no run.json, checkpoints or samples


def test_other_processes_take_no_lock_and_stop_when_process_0_is_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(distributed, "any_process", lambda flag: flag)
  with workdir_lock.hold(tmp_path):  # process 0 got it (the all-gather says no refusal)
    assert not (tmp_path / "run.lock").exists() and not (tmp_path / "run.holder.json").exists()
  monkeypatch.setattr(distributed, "any_process", lambda flag: True)
  with pytest.raises(WorkdirBusyError, match="process 0 found .* in use by another training run"):
    with workdir_lock.hold(tmp_path):
      pass


# Joins a 2-process run on localhost and takes the workdir's lock as gan_jax.start does.
TAKE_LOCK_IN_TWO_PROCESSES = """
import sys
from gan_jax import cli, distributed, workdir_lock
address, process_id, workdir = sys.argv[1:]
distributed.initialize(address, 2, int(process_id))
with cli.exit_on_user_error():
  with workdir_lock.hold(workdir):
    print('held by process', process_id)
"""


@pytest.mark.slow
def test_two_processes_stop_together_when_process_0_is_refused(tmp_path):
  env = subprocess_env(1, JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")

  def both(workdir):
    with socket.socket() as free:
      free.bind(("127.0.0.1", 0))
      address = f"127.0.0.1:{free.getsockname()[1]}"
    processes = [subprocess.Popen(
        ["nice", "-n", "15", sys.executable, "-c", TAKE_LOCK_IN_TWO_PROCESSES, address, str(i),
         str(workdir)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in range(2)]
    outputs = [process.communicate(timeout=600) for process in processes]
    return [(process.returncode, *output) for process, output in zip(processes, outputs)]

  held = workdir_lock.WorkdirLock(tmp_path)
  held.acquire()
  (code0, _, err0), (code1, _, err1) = both(tmp_path)
  assert (code0, code1) == (1, 1), (err0, err1)
  assert f"error: {tmp_path} is in use by the training run of pid {os.getpid()}" in err0
  assert f"error: process 0 found {tmp_path} in use by another training run" in err1
  held.release()
  results = both(tmp_path)
  assert [(code, out.splitlines()[-1]) for code, out, _ in results] == [  # gloo prints too
      (0, "held by process 0"), (0, "held by process 1")], results
  assert not (tmp_path / "run.holder.json").exists()


class Runs:
  """`python -m gan_jax.main` subprocesses on the tiny config and synthetic faces."""

  def __init__(self, scratch: pathlib.Path):
    self.scratch = scratch
    # 8 px (G and D of one convolution each): the lock is the point, and the first run
    # compiles less.
    data = scratch / "faces8.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (256, 8, 8, 3), dtype=np.uint8))
    self.flags = ["--config", "configs/tiny.py", f"--config.data.path={data}",
                  "--config.data.resolution=8",
                  f"--config.train.num_steps={STEPS}", "--config.checkpoint_every=10",
                  "--config.log_every=10", "--config.sample_every=1000"]
    self.env = subprocess_env(1, scratch / "xla_cache", TF_CPP_MIN_LOG_LEVEL="3")
    self.count = 0

  def start(self, workdir: pathlib.Path, pause: bool = False) -> subprocess.Popen:
    self.count += 1
    env = dict(self.env)
    if pause:
      env.update(PAUSE_AT=str(PAUSE_AT), PAUSED=str(workdir.parent / f"{workdir.name}.paused"),
                 GATE=str(workdir.parent / f"{workdir.name}.gate"))
    log = open(self.scratch / f"{workdir.name}.{self.count}.log", "w")
    process = subprocess.Popen(
        ["nice", "-n", "15", sys.executable, "-c", LAUNCH, *self.flags, f"--workdir={workdir}"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    process.log = pathlib.Path(log.name)
    log.close()
    return process

  def finish(self, process: subprocess.Popen, timeout: float = 900) -> str:
    """Wait for the end; the log (the process is killed if it does not end in time)."""
    try:
      process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      if timeout:
        raise
    finally:
      if process.poll() is None:
        process.kill()
        process.wait()
    return process.log.read_text()

  def run(self, workdir: pathlib.Path) -> str:
    log = self.finish(self.start(workdir))
    assert "error:" not in log, log[-3000:]
    return log


def wait_for(path: pathlib.Path, process: subprocess.Popen, timeout: float = 900) -> None:
  deadline = time.monotonic() + timeout
  while not path.exists():
    assert process.poll() is None, process.log.read_text()[-3000:]
    assert time.monotonic() < deadline, f"no {path} after {timeout} s"
    time.sleep(0.05)


def fingerprint(workdir: pathlib.Path) -> tuple[int, str]:
  step, tree = checkpoint.restore_tree(workdir)
  return step, checkpoint.fingerprint(tree)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  return Runs(tmp_path_factory.mktemp("lock_runs"))


@pytest.fixture(scope="module")
def alone(runs):
  """(step, fingerprint) of the run done alone in its workdir."""
  workdir = runs.scratch / "alone"
  runs.run(workdir)
  return fingerprint(workdir)


@pytest.mark.slow
def test_a_second_run_stops_at_once_and_the_first_loses_nothing(runs, alone):
  workdir = runs.scratch / "shared"
  first = runs.start(workdir, pause=True)
  try:
    wait_for(runs.scratch / "shared.paused", first)  # mid-run, checkpoint 10 on disk
    second = runs.start(workdir)
    log = runs.finish(second, timeout=600)
    assert second.returncode == 1, log[-3000:]
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, log[-3000:]
    assert (f"error: {workdir} is in use by the training run of pid {first.pid} on host {HOST} "
            "(started ") in errors[0]
    assert "data: " not in log  # stopped before reading any data
    assert os.listdir(workdir / "checkpoints") == [str(PAUSE_AT)]
    (runs.scratch / "shared.gate").touch()
    log = runs.finish(first)
    assert first.returncode == 0 and "error:" not in log, log[-3000:]
  finally:
    runs.finish(first, timeout=0)
  assert fingerprint(workdir) == alone  # nothing lost
  assert [step for step, _ in checkpoint.list_checkpoints(workdir)] == [PAUSE_AT, STEPS]
  assert not (workdir / "run.holder.json").exists()
  assert len(run_record.read(workdir)) == 1  # the refused run recorded nothing
  assert (workdir / "log.txt").read_text().count("] config:") == 1  # nor logged its start there


@pytest.mark.slow
def test_a_killed_runs_lock_is_taken_over_and_the_run_resumes(runs, alone):
  workdir = runs.scratch / "killed"
  first = runs.start(workdir, pause=True)
  try:
    wait_for(runs.scratch / "killed.paused", first)
    first.send_signal(signal.SIGKILL)  # nice execs python: this is the training process
  finally:
    runs.finish(first, timeout=0)
  left = json.loads((workdir / "run.holder.json").read_text())
  assert (left["pid"], left["host"]) == (first.pid, HOST)

  log = runs.run(workdir)
  assert f"left by the training run of pid {first.pid} on host {HOST}" in log
  assert "taking it over" in log and f"resumed from step {PAUSE_AT}" in log
  assert fingerprint(workdir) == alone
  assert not (workdir / "run.holder.json").exists()
  starts = run_record.read(workdir)  # one record per start, the latest last
  assert [start["checkpoint_at_start"] for start in starts] == [None, PAUSE_AT]
  assert starts[0]["pid"] == first.pid
  assert all(f"--workdir={workdir}" in start["command"] for start in starts)
  assert all(start["config"]["train"]["num_steps"] == STEPS for start in starts)
  assert all(start["devices"]["count"] == 1 and start["devices"]["platform"] == "cpu"
             for start in starts)
  assert all("tensorflow" not in start["versions"] for start in starts)  # blocked, not imported
