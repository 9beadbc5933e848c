"""Multi-process data parallelism: settings, the early batch check, and a real 2-process run.

The end-to-end tests start, side by side, one process with 4 CPU devices
(through launch/local.sh) and two processes with 2 CPU devices each, joined by
jax.distributed on 127.0.0.1 with gloo CPU collectives, and compare what they
trained.
"""

import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT, subprocess_env
from configs import tiny
from gan_jax import checkpoint, distributed, start
from gan_jax.config.checks import ConfigError
from gan_jax.data import loader as data_loader

STEPS = 3
TIMEOUT_S = 600


# --- where the settings come from ---

def test_single_process_without_settings():
  settings = distributed.resolve(environ={})
  assert settings == distributed.Settings("single")
  assert not settings.is_multi_process


def test_flags_win_over_environment():
  environ = {"GAN_JAX_COORDINATOR": "10.0.0.1:1234", "GAN_JAX_NUM_PROCESSES": "4",
             "GAN_JAX_PROCESS_ID": "3"}
  assert distributed.resolve("127.0.0.1:99", 2, 1, environ=environ) == distributed.Settings(
      "flags", "127.0.0.1:99", 2, 1)
  assert distributed.resolve(environ=environ) == distributed.Settings(
      "environment", "10.0.0.1:1234", 4, 3)


def test_slurm_step_with_several_tasks_is_detected():
  slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[1-2]", "SLURM_NTASKS": "2",
           "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}
  assert distributed.resolve(environ=slurm) == distributed.Settings("slurm", None, 2, 1)
  # One task (a plain sbatch script, or srun -n1) is one process.
  assert distributed.resolve(environ={**slurm, "SLURM_NTASKS": "1"}).source == "single"


@pytest.mark.parametrize("args, environ, message", [
    (("127.0.0.1:1", None, None), {}, "--coordinator_address given without --num_processes, "
     "--process_id"),
    ((None, None, None), {"GAN_JAX_NUM_PROCESSES": "2"}, "GAN_JAX_NUM_PROCESSES given without "
     "GAN_JAX_COORDINATOR, GAN_JAX_PROCESS_ID"),
    (("127.0.0.1:1", 2, 2), {}, "--process_id=2 must be in [0, 1]"),
    (("127.0.0.1", 2, 0), {}, "must be HOST:PORT of process 0"),
    ((None, None, None), {"GAN_JAX_COORDINATOR": "h:1", "GAN_JAX_NUM_PROCESSES": "two",
                          "GAN_JAX_PROCESS_ID": "0"}, "GAN_JAX_NUM_PROCESSES='two' is not"),
])
def test_bad_settings_say_what_to_set(args, environ, message):
  with pytest.raises(distributed.DistributedError) as error:
    distributed.resolve(*args, environ=environ)
  assert message in str(error.value)


def test_initialize_is_a_no_op_for_one_process(monkeypatch):
  for name in (distributed.COORDINATOR_ENV, distributed.NUM_PROCESSES_ENV,
               distributed.PROCESS_ID_ENV, "SLURM_NTASKS"):
    monkeypatch.delenv(name, raising=False)
  assert distributed.initialize().source == "single"
  assert not jax.distributed.is_initialized()


# --- the batch is checked before data is read or anything compiles ---

def test_batch_not_divisible_by_devices_fails_before_reading_data(tmp_path):
  config = tiny.get_config()
  config.train.batch_size = 30  # the test process has 8 devices
  # A data path that does not exist: the batch check must come first.
  config.data.path = str(tmp_path / "no_such_folder")
  with pytest.raises(ConfigError) as error:
    start.run(config, str(tmp_path / "workdir"))
  assert str(error.value) == (
      f"train.batch_size=30 is not divisible by the {jax.device_count()} devices; use a multiple "
      f"of {jax.device_count()} (e.g. --config.train.batch_size=24)")
  assert not (tmp_path / "workdir" / "checkpoints").exists()


# --- two processes on localhost vs one process ---

def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def cpu_env(num_devices: int, hide_tf: pathlib.Path, **extra) -> dict:
  """A CPU-only environment with `num_devices` devices and no TensorFlow (as on a GPU box)."""
  env = subprocess_env(num_devices, JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
                       PYTHONPATH=os.pathsep.join([str(hide_tf), str(REPO_ROOT)]),
                       PYTHON=sys.executable, **extra)
  for name in ("GAN_JAX_COORDINATOR", "GAN_JAX_NUM_PROCESSES", "GAN_JAX_PROCESS_ID"):
    env.pop(name, None)
  return env


def hidden_tensorflow(directory: pathlib.Path) -> pathlib.Path:
  """A `tensorflow` package that fails to import: the runs take the no-TF paths, and start faster."""
  (directory / "tensorflow").mkdir(parents=True)
  (directory / "tensorflow" / "__init__.py").write_text(
      'raise ImportError("tensorflow is hidden by tests/test_distributed.py")\n')
  return directory


@pytest.fixture(scope="module")
def runs(faces_dir, tmp_path_factory):
  """Train STEPS steps of configs/tiny.py: 1 process x 4 devices, and 2 processes x 2 devices."""
  root = tmp_path_factory.mktemp("distributed")
  hide_tf = hidden_tensorflow(root / "no_tf")
  # Prepared once here (it is cached), not by three processes at once.
  data_loader.training_images(faces_dir, 16, "center")
  flags = [f"--config.data.path={faces_dir}", f"--config.train.num_steps={STEPS}",
           # numpy: each process reads only its own share of every batch.
           "--config.data.pipeline=numpy", "--config.log_every=1",
           # float32 products: bfloat16 ones (train.conv_dtype=auto on CPUs with bf16 dot
           # instructions) magnify gloo's other order of sums past the tolerance below.
           "--config.train.conv_dtype="]
  port = free_port()
  commands = {
      "one": (["bash", str(REPO_ROOT / "launch" / "local.sh"), "configs/tiny.py", str(root / "one"),
               *flags], cpu_env(1, hide_tf, GAN_JAX_CPU_DEVICES="4", XLA_FLAGS="")),
  }
  for i in range(2):
    commands[f"two.{i}"] = (
        [sys.executable, "-m", "gan_jax.main", "--config", "configs/tiny.py",
         "--workdir", str(root / "two"), *flags, f"--coordinator_address=127.0.0.1:{port}",
         "--num_processes=2", f"--process_id={i}"], cpu_env(2, hide_tf))
  processes, logs = {}, {}
  for name, (command, env) in commands.items():
    logs[name] = root / f"{name}.log"
    with open(logs[name], "w") as log:
      processes[name] = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
  deadline = time.monotonic() + TIMEOUT_S
  try:
    for process in processes.values():
      process.wait(timeout=max(1, deadline - time.monotonic()))
  except subprocess.TimeoutExpired:
    pass
  finally:
    for process in processes.values():
      if process.poll() is None:
        process.kill()
        process.wait()
  results = {name: (process.returncode, logs[name].read_text()) for name, process in
             processes.items()}
  return root, results


def check_ok(results, name):
  code, log = results[name]
  assert code == 0, f"{name} exited with {code}:\n{log[-4000:]}"
  return log


def test_local_sh_trains_on_every_cpu_device(runs):
  root, results = runs
  log = check_ok(results, "one")
  assert "process 0 of 1, 4 local / 4 devices (cpu)" in log
  assert (root / "one" / "samples" / f"step_{STEPS:07d}.png").is_file()
  assert checkpoint.restore_tree(root / "one")[0] == STEPS


def test_two_processes_train_like_one_process_with_as_many_devices(runs):
  root, results = runs
  for i in range(2):
    log = check_ok(results, f"two.{i}")
    assert f"process {i} of 2, 2 local / 4 devices (cpu)" in log
  one_step, one = checkpoint.restore_tree(root / "one")
  two_step, two = checkpoint.restore_tree(root / "two")
  assert one_step == two_step == STEPS
  one, two = checkpoint.named_leaves(one), checkpoint.named_leaves(two)
  assert one.keys() == two.keys()
  for name in one:
    if np.issubdtype(one[name].dtype, np.floating):
      # Not bit-identical: gloo adds the 4 devices' partial sums across processes
      # in another order than the in-process all-reduce (rounding differences only).
      np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-7, err_msg=name)
    else:
      np.testing.assert_array_equal(two[name], one[name], err_msg=name)


def test_only_process_zero_writes_logs(runs):
  root, results = runs
  check_ok(results, "two.0")
  records = [line for line in (root / "two" / "metrics.jsonl").read_text().splitlines()
             if '"d_loss"' in line]
  assert len(records) == STEPS  # log_every=1; a second writer would double them
  assert len(list((root / "two" / "samples").glob("*.png"))) == 1
