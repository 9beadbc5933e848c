"""Seeded reproduction and exact resume, end to end through `python -m gan_jax.main`.

Every run is a subprocess on one CPU device (eight where the device count is
the point), started as on a GPU machine without TensorFlow: blocking its import
also spares each start TensorFlow's import time. The runs of one pytest worker
share a persistent XLA compilation cache, so only the first run of each
program compiles (workers of pytest-xdist keep their own: JAX writes cache
entries without a lock).
"""

import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import MAIN_WITHOUT_TENSORFLOW, REPO_ROOT, subprocess_env
from gan_jax import checkpoint

STEPS = 60
SAVE_EVERY = 5

pytestmark = pytest.mark.slow


class Trainer:
  """Starts `python -m gan_jax.main` on the tiny config with a few real faces."""

  def __init__(self, faces_dir: pathlib.Path, scratch: pathlib.Path):
    self.scratch = scratch
    # At 8 px (G and D of one convolution each): resuming is the point, and the first run of
    # each device count compiles less.
    self.flags = [
        "--config", "configs/tiny.py", f"--config.data.path={faces_dir}",
        "--config.data.resolution=8", "--config.data.limit=256",
        f"--config.data.cache_dir={scratch / 'prepared'}",
        f"--config.train.num_steps={STEPS}", f"--config.checkpoint_every={SAVE_EVERY}",
        "--config.log_every=20", "--config.sample_every=1000"]
    self.runs = 0

  def env(self, devices: int) -> dict[str, str]:
    return subprocess_env(devices, self.scratch / "xla_cache", TF_CPP_MIN_LOG_LEVEL="3")

  def start(self, workdir: pathlib.Path, *flags: str, devices: int = 1) -> subprocess.Popen:
    self.runs += 1
    log = workdir.parent / f"{workdir.name}.{self.runs}.log"
    with open(log, "w") as out:
      process = subprocess.Popen(
          [sys.executable, *MAIN_WITHOUT_TENSORFLOW, *self.flags, f"--workdir={workdir}", *flags],
          cwd=REPO_ROOT, env=self.env(devices), stdout=out, stderr=subprocess.STDOUT)
    process.log = log
    return process

  def run(self, workdir: pathlib.Path, *flags: str, devices: int = 1) -> str:
    """Train to the end; the log."""
    process = self.start(workdir, *flags, devices=devices)
    try:
      process.wait(timeout=600)
    finally:
      stop(process)
    log = process.log.read_text()
    assert process.returncode == 0, log[-3000:]
    return log


def stop(process: subprocess.Popen) -> None:
  if process.poll() is None:
    process.kill()
    process.wait()


def wait_until(process: subprocess.Popen, condition, timeout: float = 300) -> bool:
  """Poll `condition` every 2 ms until it holds (True) or the process ends (False)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return True
    if process.poll() is not None:
      return False
    time.sleep(0.002)
  raise TimeoutError(f"condition not reached in {timeout} s; see {process.log}")


def checkpoint_entries(workdir: pathlib.Path) -> list[str]:
  try:
    return os.listdir(workdir / "checkpoints")
  except FileNotFoundError:
    return []


def latest_step(workdir: pathlib.Path) -> int:
  """The newest finished checkpoint (0 when none)."""
  return max((int(name) for name in checkpoint_entries(workdir) if name.isdigit()), default=0)


def saving(workdir: pathlib.Path) -> bool:
  """Whether a save is under way: Orbax writes into <step>.orbax-checkpoint-tmp first."""
  return any("orbax-checkpoint-tmp" in name for name in checkpoint_entries(workdir))


def fingerprint(workdir: pathlib.Path) -> tuple[int, str]:
  step, tree = checkpoint.restore_tree(workdir)
  return step, checkpoint.fingerprint(tree)


@pytest.fixture(scope="module")
def trainer(faces_dir, tmp_path_factory):
  return Trainer(faces_dir, tmp_path_factory.mktemp("resume_scratch"))


@pytest.fixture(scope="module")
def reference_run(trainer, tmp_path_factory):
  """The workdir of an uninterrupted run of STEPS steps, seed 0."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  trainer.run(workdir)
  return workdir


@pytest.fixture(scope="module")
def reference(reference_run):
  """(step, fingerprint) of the uninterrupted run."""
  return fingerprint(reference_run)


def test_same_seed_same_weights_other_seed_other_weights(trainer, reference, tmp_path):
  trainer.run(tmp_path / "again")
  assert fingerprint(tmp_path / "again") == reference
  trainer.run(tmp_path / "seed1", "--config.seed=1")
  step, other = fingerprint(tmp_path / "seed1")
  assert step == STEPS and other != reference[1]


def test_stop_and_resume_is_exact(trainer, reference, tmp_path):
  workdir = tmp_path / "run"
  trainer.run(workdir, "--config.train.num_steps=30")
  assert latest_step(workdir) == 30
  # Go on as a preempted job would: SIGTERM once it is past step 35 -> save, exit 0.
  process = trainer.start(workdir, "--config.train.num_steps=1000")
  try:
    assert wait_until(process, lambda: latest_step(workdir) >= 35)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
  finally:
    stop(process)
  log = process.log.read_text()
  assert process.returncode == 0, log[-3000:]
  assert "resumed from step 30" in log
  stopped = int(re.search(r"SIGTERM: saved step (\d+) to", log)[1])
  assert 35 <= stopped < STEPS and latest_step(workdir) == stopped

  log = trainer.run(workdir)  # the original command again
  assert f"resumed from step {stopped}" in log
  assert fingerprint(workdir) == reference


def test_kill9_at_random_moments_resumes_exactly(trainer, reference, tmp_path):
  """kill -9 five times (in start-up, after random steps, inside a save), then finish."""
  workdir, rng = tmp_path / "run", random.Random(5)
  kinds = ["startup", "steps", "save", "steps", "steps"]
  killed_inside_save, steps_reached = False, []
  for i, kind in enumerate(kinds):
    if kind == "steps" and "save" in kinds[:i] and not killed_inside_save:
      kind = "save"  # the earlier try's save finished before the kill landed: again
    start_step = latest_step(workdir)
    process = trainer.start(workdir)
    try:
      if kind == "startup":  # while importing, compiling or restoring
        time.sleep(rng.uniform(0.5, 4.0))
      elif kind == "steps":
        target = min(start_step + SAVE_EVERY * rng.randint(1, 3), STEPS - SAVE_EVERY)
        assert wait_until(process, lambda: latest_step(workdir) >= target), process.log
        time.sleep(rng.uniform(0.0, 0.2))
      else:
        # Past start-up (which removes a killed save's leftovers), then at the next save.
        started = lambda: f" training {STEPS} steps on " in process.log.read_text()
        assert wait_until(process, started), process.log
        assert wait_until(process, lambda: saving(workdir)), process.log
      assert process.poll() is None, f"the run ended before the kill: {process.log}"
      process.send_signal(signal.SIGKILL)
      process.wait(timeout=60)
    finally:
      stop(process)
    assert process.returncode == -signal.SIGKILL
    if kind == "save":
      killed_inside_save = saving(workdir)
    steps_reached.append(latest_step(workdir))
  assert killed_inside_save, "no kill landed inside a save (polled for Orbax's tmp directory)"
  assert steps_reached[-1] > 0

  log = trainer.run(workdir)
  assert f"resumed from step {steps_reached[-1]}" in log
  assert not saving(workdir)  # the killed save's tmp directory was cleaned up
  assert fingerprint(workdir) == reference


def test_saved_on_8_devices_resumes_on_1(trainer, tmp_path):
  workdir = tmp_path / "run"
  log = trainer.run(workdir, "--config.train.num_steps=10", devices=8)
  assert "training 10 steps on 8 devices" in log
  log = trainer.run(workdir, "--config.train.num_steps=20", devices=1)
  assert "resumed from step 10" in log and "training 20 steps on 1 devices" in log
  step, tree = checkpoint.restore_tree(workdir)
  assert step == 20 and int(tree["step"]) == 20
  assert all(np.isfinite(x).all() for x in checkpoint.named_leaves(tree).values()
             if np.issubdtype(x.dtype, np.floating))


def test_changed_config_is_refused_with_one_line(trainer, reference_run, reference):
  process = trainer.start(reference_run, "--config.model.width=16", "--config.loss.name=hinge")
  try:
    process.wait(timeout=600)
  finally:
    stop(process)
  log = process.log.read_text()
  assert process.returncode == 1, log[-3000:]
  assert "Traceback" not in log
  error = [line for line in log.splitlines() if line.startswith("error: ")]
  assert len(error) == 1 and "cannot be resumed" in error[0]
  assert "loss.name: saved 'ns', now 'hinge'" in error[0]
  assert "model.width: saved 8, now 16" in error[0]
  assert fingerprint(reference_run) == reference  # untouched
