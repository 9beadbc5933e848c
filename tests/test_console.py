"""What a training run shows: lines for people, a progress bar on a terminal only, library INFO
and the full config in WORKDIR/log.txt, and no TensorFlow on the device input path.

Two `python -m gan_jax.main` runs of configs/tiny.py on 256 random 8 px
images (G and D of one convolution each: the console is the point, and the
first run compiles less) share one compilation cache: the issue's 60 steps
with a checkpoint every 10 on a pseudo-terminal, and 20 steps with 2
checkpoints (as many library records of each kind, a third of the steps) on a
pipe with --verbose.
The rest is in-process.
"""

import io
import logging
import os
import pty
import re
import select
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT, subprocess_env
from gan_jax import console
from gan_jax.monitor import progress

PROJECT_FILES = {path.name for path in (REPO_ROOT / "gan_jax").rglob("*.py")}
STEPS, CHECKPOINT_EVERY = 60, 10
PIPE_STEPS = 20  # the --verbose run on a pipe: checkpoints at 10 and 20
TIMEOUT_S = 900  # the 2-core machine shared with other jobs took 10 min to start one run
# A library's INFO record on the console ("16:20:33 checkpoint_manager.py:512] ...") and in
# WORKDIR/log.txt ("2026-12-07 16:20:33,565 INFO checkpoint_manager.py:512] ...").
CONSOLE_INFO = re.compile(r"^\d\d:\d\d:\d\d ([^\s:]+):\d+\]", re.MULTILINE)
FILE_INFO = re.compile(r"^[\d-]+ [\d:,]+ INFO ([^\s:]+):\d+\]", re.MULTILINE)
# absl's prefix ("I1207 16:20:33.565504 140062532909952 monitor.py:184]"), which no line has now.
ABSL_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ ", re.MULTILINE)
# The log line of a step, e.g. "16:20:33 step 20/60 d_loss=1.3817 ... | 1900 img/s, eta 0:00:01".
# On a terminal a line may follow the "\r" that cleared the bar.
STEP_LINE = r"(?:^|\r)\d\d:\d\d:\d\d step {step}/{steps} d_loss=[\d.]+ g_loss=[\d.]+ [^\r\n]*"
# A launcher that says at exit whether the run imported TensorFlow (installed here).
LAUNCH = ("import atexit, runpy, sys; atexit.register(lambda: print('tensorflow imported:', "
          "'tensorflow' in sys.modules, file=sys.stderr)); "
          "runpy.run_module('gan_jax.main', run_name='__main__', alter_sys=True)")
# The training bar, e.g. "20/60 steps |####      | 33% [00:01<00:02, 1,234 img/s, d_loss=...]".
TRAIN_BAR = re.compile(r"\d+/60 steps \|.*\| +\d+% \[.*img/s")


def library_info_files(text: str, pattern: re.Pattern) -> list[str]:
  """The files of INFO records in `text` that are not the project's (Orbax's, absl's, ...)."""
  return [name for name in pattern.findall(text) if name not in PROJECT_FILES]


@pytest.fixture(scope="module")
def main_command(tmp_path_factory):
  """(command for a workdir and extra flags, environment): tiny, one CPU device, nice."""
  root = tmp_path_factory.mktemp("console")
  faces = root / "faces8.npy"
  np.save(faces, np.random.RandomState(0).randint(0, 256, (256, 8, 8, 3), np.uint8))
  env = subprocess_env(1, root / "xla_cache")  # not conftest's 8 devices
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # conftest's; a user's shell has none

  def command(workdir, *flags, steps=STEPS):
    # At niceness 15 (not 15 more than a niced pytest: 19 starves behind other jobs).
    return ["nice", "-n", str(max(0, 15 - os.nice(0))), sys.executable, "-c", LAUNCH,
            "--config", "configs/tiny.py", f"--workdir={workdir}", f"--config.data.path={faces}",
            "--config.data.resolution=8", f"--config.train.num_steps={steps}",
            f"--config.checkpoint_every={CHECKPOINT_EVERY}", *flags]
  return command, env


def run_on_terminal(command, env) -> tuple[int, str]:
  """Run with stdout and stderr on a pseudo-terminal; (exit code, everything it wrote)."""
  controller, terminal = pty.openpty()
  process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                             cwd=REPO_ROOT, env=env)
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
  result = subprocess.run(command(workdir, "--verbose", steps=PIPE_STEPS), capture_output=True,
                          text=True, cwd=REPO_ROOT, env=env, timeout=TIMEOUT_S)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stderr, workdir


def test_terminal_shows_the_training_bar_with_the_log_lines_above_it(terminal_run):
  output, _ = terminal_run
  assert TRAIN_BAR.search(output), output[-2000:]
  assert "60/60 steps" in output and "d_loss=" in output
  for step in (1, 20, 40, 60):  # the periodic log lines are still printed
    assert re.search(STEP_LINE.format(step=step, steps=STEPS), output, re.MULTILINE), output
  # From the second log step on, the line ends with the speed and the time left.
  assert re.search(STEP_LINE.format(step=60, steps=STEPS) + r" \| \d+ img/s, eta \d+:\d\d:\d\d",
                   output, re.MULTILINE)
  assert not ABSL_PREFIX.search(output), output[:3000]


def test_the_device_path_imports_no_tensorflow(terminal_run, verbose_pipe_run):
  """TensorFlow (installed here) is for the tf.data input path only: neither run imports it,
  so none of its C++ start-up lines reach the console or the log."""
  for output, workdir in (terminal_run, verbose_pipe_run):
    assert "tensorflow imported: False" in output, output[-2000:]
    assert "oneDNN" not in output and "oneDNN" not in (workdir / console.LOG_FILE).read_text()


def test_no_library_info_on_the_console_but_all_of_it_in_log_txt(terminal_run):
  output, workdir = terminal_run
  assert library_info_files(output, CONSOLE_INFO) == [], output[:3000]
  # The config by its file and overrides on the console; all of it in log.txt and run.json.
  assert re.search(r"(?:^|\r)\d\d:\d\d:\d\d config configs/tiny.py with --config.data.path=\S+ "
                   r"--config.data.resolution=8 --config.train.num_steps=60 ", output, re.M)
  assert "config:" not in output and "latent_dim" not in output, output[:3000]
  assert " training 60 steps" in output  # the project's own lines
  log = (workdir / console.LOG_FILE).read_text()
  assert log.count("] config:\n") == 1 and "  latent_dim: " in log
  library = library_info_files(log, FILE_INFO)
  assert "checkpoint_manager.py" in library  # Orbax's, for each of the 6 checkpoints
  assert len(library) >= 6
  assert f"INFO monitor.py:" in log and f"] step {STEPS}/{STEPS} d_loss=" in log  # with dates


def test_a_pipe_gets_no_bar_and_verbose_shows_library_info(verbose_pipe_run):
  stderr, workdir = verbose_pipe_run
  assert not re.search(r"\d+/\d+ steps \|", stderr) and "\r" not in stderr
  assert re.search(STEP_LINE.format(step=PIPE_STEPS, steps=PIPE_STEPS), stderr, re.MULTILINE)
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


def test_train_progress_shows_ds_raw_outputs_and_adas_p(monkeypatch):
  monkeypatch.setattr(progress, "_width", lambda stream: {"ncols": 200})  # a wide terminal
  stream = FakeTerminal()
  bar = progress.TrainProgress(num_steps=60, batch_size=32, stream=stream)
  bar.show(1, {"d_loss": 1.5, "g_loss": 0.25, "d_real_logit": 0.8, "d_fake_logit": -0.7,
               "d_real_acc": 0.9, "ada_p": 0.125})  # hinge, lsgan, wgan-gp: D's raw outputs
  bar.close()
  assert "d_loss=1.500 g_loss=0.250 d_real_logit=0.800 d_fake_logit=-0.700 ada_p=0.125" in (
      stream.getvalue())


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
    project.info("the whole config", extra=console.FILE_ONLY)
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
  assert ("a library note" in shown) == verbose and "the whole config" not in shown
  # For people: the time of day, the level above INFO, a library record's file and line.
  assert re.search(r"^\d\d:\d\d:\d\d a project line$", shown, re.MULTILINE), shown
  assert re.search(r"^\d\d:\d\d:\d\d WARNING test_console.py:\d+\] a library warning$", shown,
                   re.MULTILINE), shown
  lines = (tmp_path / "workdir" / "log.txt").read_text().splitlines()
  assert [line.split("] ")[-1] for line in lines] == [
      "before the file", "a project line", "the whole config", "a library note",
      "a library warning", "a later project line"]
  assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) ", line)
             for line in lines)
  assert console.log_file_name(3) == "log.process_3.txt"
