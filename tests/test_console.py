"""What a training run shows: a progress bar on a terminal only; library INFO in WORKDIR/log.txt.

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
import pathlib
import pty
import re
import select
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import subprocess_env
from gan_jax import console
from gan_jax.monitor import progress

REPO = pathlib.Path(__file__).resolve().parents[1]
PROJECT_FILES = {path.name for path in (REPO / "gan_jax").rglob("*.py")}
STEPS, CHECKPOINT_EVERY = 60, 10
PIPE_STEPS = 20  # the --verbose run on a pipe: checkpoints at 10 and 20
TIMEOUT_S = 900  # the 2-core machine shared with other jobs took 10 min to start one run
# An INFO record as absl formats it, Python's ("I1130 15:12:27.966799 140103974488960
# train.py:93] ...") or a C++ library's on its own ("I0000 00:00:1796064083.501427 29531
# port.cc:153] oneDNN custom operations are on ...", TensorFlow's at import).
CONSOLE_INFO = re.compile(r"^I\d{4} [\d:.]+ +\d+ ([^\s:]+):\d+\]", re.MULTILINE)
FILE_INFO = re.compile(r"^[\d-]+ [\d:,]+ INFO ([^\s:]+):\d+\]", re.MULTILINE)
# What absl's C++ logging prints once before the first of those lines.
ABSL_PREAMBLE = "All log messages before absl::InitializeLog() is called"
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
    return ["nice", "-n", str(max(0, 15 - os.nice(0))), sys.executable, "-m", "gan_jax.main",
            "--config", "configs/tiny.py", f"--workdir={workdir}", f"--config.data.path={faces}",
            "--config.data.resolution=8", f"--config.train.num_steps={steps}",
            f"--config.checkpoint_every={CHECKPOINT_EVERY}", *flags]
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
  result = subprocess.run(command(workdir, "--verbose", steps=PIPE_STEPS), capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=TIMEOUT_S)
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
  assert library_info_files(output, CONSOLE_INFO) == [], output[:3000]
  assert ABSL_PREAMBLE not in output, output[:3000]
  assert "] config:" in output and "] training 60 steps" in output  # the project's own lines
  log = (workdir / console.LOG_FILE).read_text()
  library = library_info_files(log, FILE_INFO)
  assert "checkpoint_manager.py" in library  # Orbax's, for each of the 6 checkpoints
  assert len(library) >= 6
  assert f"] step {STEPS}/{STEPS} (epoch" in log  # the project's records too, with timestamps


def test_a_pipe_gets_no_bar_and_verbose_shows_library_info(verbose_pipe_run):
  stderr, workdir = verbose_pipe_run
  assert not re.search(r"\d+/\d+ steps \|", stderr) and "\r" not in stderr
  assert f"] step {PIPE_STEPS}/{PIPE_STEPS} (epoch" in stderr
  assert "checkpoint_manager.py" in library_info_files(stderr, CONSOLE_INFO)
  assert (workdir / console.LOG_FILE).is_file()


def test_native_info_lines_go_to_log_txt_unless_verbose(terminal_run, verbose_pipe_run):
  """What C++ libraries print themselves (TensorFlow at import) on the console with --verbose
  only; in WORKDIR/log.txt otherwise. (None at all where TensorFlow is not installed.)"""
  def native(files):
    return {name for name in files if not name.endswith(".py")}
  shown_verbose = native(library_info_files(verbose_pipe_run[0], CONSOLE_INFO))
  output, workdir = terminal_run
  assert native(library_info_files(output, CONSOLE_INFO)) == set()
  in_log = native(library_info_files((workdir / console.LOG_FILE).read_text(), FILE_INFO))
  assert shown_verbose <= in_log, (shown_verbose, in_log)


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


def test_native_lines_become_records_of_their_level_and_only_warnings_reach_the_console(
    tmp_path):
  stream = io.StringIO()
  run_console = console.Console(stream=stream)
  try:
    run_console.log_to_file(tmp_path)
    with console.native_stderr_to_log():  # written past Python, as C++ libraries write
      os.write(2, b"a line of no known form\n"
               b"WARNING: " + console.ABSL_PREAMBLE.encode() + b" are written to STDERR\n"
               b"I0000 00:00:1796064083.501427   29531 port.cc:153] oneDNN custom operations\n"
               b"I0000 00:00:1796064083.570434   29531 cpu_feature_guard.cc:227] optimized\n"
               b"To enable the following instructions: AVX2, rebuild TensorFlow\n"
               b"/site-packages/tf/api.py:12: DeprecationWarning: an old API\n  import old\n"
               b"E0000 00:00:1796064083.600000   29531 cuda_dnn.cc:8] cannot register cuDNN\n")
  finally:
    run_console.close()
  shown = stream.getvalue()
  assert CONSOLE_INFO.findall(shown) == [] and console.ABSL_PREAMBLE not in shown
  assert "cuda_dnn.cc:8] cannot register cuDNN" in shown and "a line of no known form" in shown
  assert "api.py:12] DeprecationWarning: an old API\n  import old" in shown
  log = (tmp_path / console.LOG_FILE).read_text()
  assert FILE_INFO.findall(log) == ["absl", "port.cc", "cpu_feature_guard.cc"]
  assert "optimized\nTo enable the following instructions" in log  # one record, two lines
  assert re.search(r"ERROR cuda_dnn\.cc:8\] cannot register cuDNN", log)
  assert re.search(r"WARNING stderr:0\] a line of no known form", log)


@pytest.mark.parametrize("verbose", [False, True])
def test_import_quietly_sends_a_modules_import_lines_to_the_log_file(tmp_path, monkeypatch,
                                                                     verbose):
  (tmp_path / "quiet_probe.py").write_text(
      "import os\nos.write(2, b'I0000 00:00:1.5   7 probe.cc:3] loaded the probe\\n')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.delitem(sys.modules, "quiet_probe", raising=False)
  stream = io.StringIO()
  run_console = console.Console(verbose=verbose, stream=stream)
  try:
    run_console.log_to_file(tmp_path / "workdir")
    run_console.import_quietly("quiet_probe")
    run_console.import_quietly("no_such_module_here")  # not installed: nothing
    monkeypatch.setitem(sys.modules, "blocked_module", None)
    run_console.import_quietly("blocked_module")  # blocked: left to fail where it is needed
  finally:
    run_console.close()
    imported = sys.modules.pop("quiet_probe", None) is not None
  assert imported != verbose  # verbose: left to the code that needs it, its lines unrouted
  log = (tmp_path / "workdir" / console.LOG_FILE).read_text()
  assert ("INFO probe.cc:3] loaded the probe" in log) != verbose
  assert "loaded the probe" not in stream.getvalue()
