"""What a training run shows: a progress bar on a terminal only; library INFO in WORKDIR/log.txt.

Two `python -m gan_jax.main` runs of configs/tiny.py (60 steps, a checkpoint
every 10, on 256 random 16 px images) share one compilation cache: one on a
pseudo-terminal, one on a pipe with --verbose. The rest is in-process.
"""

import io
import logging
import os
import pathlib
import pty
import re
import select
import subprocess
import sys
import time

import numpy as np
import pytest

from gan_jax import console
from gan_jax.monitor import progress

REPO = pathlib.Path(__file__).resolve().parents[1]
PROJECT_FILES = {path.name for path in (REPO / "gan_jax").rglob("*.py")}
STEPS, CHECKPOINT_EVERY = 60, 10
TIMEOUT_S = 900  # the 2-core machine shared with other jobs took 10 min to start one run
# A Python record as absl formats it: "I1130 15:12:27.966799 140103974488960 train.py:93] ...".
# (TensorFlow's C++ lines at import, "I0000 ... port.cc:153] oneDNN ...", bypass Python logging.)
CONSOLE_INFO = re.compile(r"^I\d{4} [\d:.]+ +\d+ (\S+\.py):\d+\]", re.MULTILINE)
FILE_INFO = re.compile(r"^[\d-]+ [\d:,]+ INFO (\S+\.py):\d+\]", re.MULTILINE)
# The training bar, e.g. "20/60 steps |####      | 33% [00:01<00:02, 1,234 img/s, d_loss=...]".
TRAIN_BAR = re.compile(r"\d+/60 steps \|.*\| +\d+% \[.*img/s")


def library_info_files(text: str, pattern: re.Pattern) -> list[str]:
  """The files of INFO records in `text` that are not the project's (Orbax's, absl's, ...)."""
  return [name for name in pattern.findall(text) if name not in PROJECT_FILES]


@pytest.fixture(scope="module")
def main_command(tmp_path_factory):
  """(command for a workdir and extra flags, environment): tiny, one CPU device, nice."""
  root = tmp_path_factory.mktemp("console")
  faces = root / "faces16.npy"
  np.save(faces, np.random.RandomState(0).randint(0, 256, (256, 16, 16, 3), np.uint8))
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(root / "xla_cache"),
             XLA_FLAGS="--xla_force_host_platform_device_count=1")  # not conftest's 8 devices

  def command(workdir, *flags):
    # At niceness 15 (not 15 more than a niced pytest: 19 starves behind other jobs).
    return ["nice", "-n", str(max(0, 15 - os.nice(0))), sys.executable, "-m", "gan_jax.main", "--config",
            "configs/tiny.py", f"--workdir={workdir}", f"--config.data.path={faces}",
            f"--config.train.num_steps={STEPS}", f"--config.checkpoint_every={CHECKPOINT_EVERY}",
            *flags]
  return command, env


def run_on_terminal(command, env) -> tuple[int, str]:
  """Run with stdout and stderr on a pseudo-terminal; (exit code, everything it wrote)."""
  controller, terminal = pty.openpty()
  process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                             cwd=REPO, env=env)
  os.close(terminal)
  chunks, deadline = [], time.monotonic() + TIMEOUT_S
  try:
    while time.monotonic() < deadline:
      ready, _, _ = select.select([controller], [], [], 1.0)
      if not ready:
        continue
      try:
        chunk = os.read(controller, 1 << 16)
      except OSError:  # EIO: every writer closed the terminal
        break
      if not chunk:
        break
      chunks.append(chunk)
  finally:
    os.close(controller)
    if process.poll() is None and time.monotonic() >= deadline:
      process.kill()
  return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def terminal_run(main_command, tmp_path_factory):
  """(console output, workdir) of the run on a pseudo-terminal."""
  command, env = main_command
  workdir = tmp_path_factory.mktemp("terminal_run")
  code, output = run_on_terminal(command(workdir), env)
  assert code == 0, output[-3000:]
  return output, workdir


@pytest.fixture(scope="module")
def verbose_pipe_run(main_command, tmp_path_factory, terminal_run):
  """(stderr, workdir) of the run with --verbose, its output read from a pipe (after the other:
  the compilation cache is then filled, and never written by two at once)."""
  del terminal_run
  command, env = main_command
  workdir = tmp_path_factory.mktemp("pipe_run")
  result = subprocess.run(command(workdir, "--verbose"), capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=TIMEOUT_S)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stderr, workdir


def test_terminal_shows_the_training_bar_with_the_log_lines_above_it(terminal_run):
  output, _ = terminal_run
  assert TRAIN_BAR.search(output), output[-2000:]
  assert "60/60 steps" in output and "d_loss=" in output
  for step in (1, 20, 40, 60):  # the periodic log lines are still printed
    assert f"] step {step}/{STEPS} (epoch" in output


def test_no_library_info_on_the_console_but_all_of_it_in_log_txt(terminal_run):
  output, workdir = terminal_run
  assert library_info_files(output, CONSOLE_INFO) == []
  assert "] config:" in output and "] training 60 steps" in output  # the project's own lines
  log = (workdir / console.LOG_FILE).read_text()
  library = library_info_files(log, FILE_INFO)
  assert "checkpoint_manager.py" in library  # Orbax's, for each of the 6 checkpoints
  assert len(library) >= 6
  assert f"] step {STEPS}/{STEPS} (epoch" in log  # the project's records too, with timestamps


def test_a_pipe_gets_no_bar_and_verbose_shows_library_info(verbose_pipe_run):
  stderr, workdir = verbose_pipe_run
  assert not TRAIN_BAR.search(stderr) and "\r" not in stderr
  assert f"] step {STEPS}/{STEPS} (epoch" in stderr
  assert "checkpoint_manager.py" in library_info_files(stderr, CONSOLE_INFO)
  assert (workdir / console.LOG_FILE).is_file()


class FakeTerminal(io.StringIO):
  def isatty(self):
    return True


@pytest.mark.parametrize("stream_type", [FakeTerminal, io.StringIO])
def test_train_progress_draws_only_on_a_terminal(stream_type):
  stream = stream_type()
  bar = progress.TrainProgress(num_steps=60, batch_size=32, stream=stream)
  bar.update(1)  # before the first log step (compilation): no bar yet
  assert stream.getvalue() == ""
  bar.show(1, {"d_loss": 1.25, "g_loss": 0.75, "d_real": 0.5, "d_fake": 0.5, "g_lr": 2e-4})
  for step in range(2, 61):
    bar.update(step)
  bar.close()
  if stream_type is FakeTerminal:
    assert TRAIN_BAR.search(stream.getvalue())
    assert "60/60 steps" in stream.getvalue()
    assert "d_loss=1.250 g_loss=0.750 d_real=0.500 d_fake=0.500" in stream.getvalue()
    assert "g_lr" not in stream.getvalue()
  else:
    assert stream.getvalue() == ""


def test_bar_is_disabled_off_a_terminal():
  assert progress.bar(10, "features", stream=io.StringIO()).disable
  assert not progress.bar(10, "features", stream=FakeTerminal()).disable


@pytest.mark.parametrize("verbose", [False, True])
def test_console_filters_library_info_and_the_file_gets_everything(tmp_path, verbose):
  project, library = logging.getLogger("gan_jax.test_console"), logging.getLogger("orbax.fake")
  levels = project.level, library.level
  project.setLevel(logging.INFO)
  library.setLevel(logging.INFO)
  stream = io.StringIO()
  run_console = console.Console(verbose=verbose, stream=stream)
  try:
    project.info("before the file")  # kept until the file is open
    run_console.log_to_file(tmp_path / "workdir")
    project.info("a project line")
    library.info("a library note")
    library.warning("a library warning")
    run_console.show_warnings_only()
    project.info("a later project line")
  finally:
    run_console.close()
    project.setLevel(levels[0])
    library.setLevel(levels[1])
  shown = stream.getvalue()
  assert "before the file" in shown and "a project line" in shown
  assert "a library warning" in shown and "a later project line" not in shown
  assert ("a library note" in shown) == verbose
  lines = (tmp_path / "workdir" / "log.txt").read_text().splitlines()
  assert [line.split("] ")[-1] for line in lines] == [
      "before the file", "a project line", "a library note", "a library warning",
      "a later project line"]
  assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) ", line)
             for line in lines)
  assert console.log_file_name(3) == "log.process_3.txt"
