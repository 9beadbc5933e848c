"""launch/local.sh and launch/slurm.sbatch: syntax, documented variables, wiring, errors.

Training through local.sh on 4 CPU devices is in tests/test_distributed.py,
where it is also the one-process reference for the two-process run.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

LOCAL = REPO_ROOT / "launch" / "local.sh"
SLURM = REPO_ROOT / "launch" / "slurm.sbatch"


def header_and_body(script: pathlib.Path) -> tuple[str, str]:
  """The leading comment block, and the lines after it that are not comments."""
  lines = script.read_text().splitlines()
  start = next(i for i, line in enumerate(lines) if not line.startswith("#"))
  body = [line for line in lines[start:] if not line.lstrip().startswith("#")]
  return "\n".join(lines[:start]), "\n".join(body)


@pytest.mark.parametrize("script", [LOCAL, SLURM], ids=lambda p: p.name)
def test_script_syntax(script):
  result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", [LOCAL, SLURM], ids=lambda p: p.name)
def test_every_variable_read_is_documented_at_the_top(script):
  header, body = header_and_body(script)
  # Upper-case names are the environment's; the scripts' own variables are lower case.
  read = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", body))
  assert read, "no variables found: is the pattern still right?"
  undocumented = sorted(name for name in read if not re.search(rf"\b{name}\b", header))
  assert not undocumented, f"{script.name} reads {undocumented} without documenting them"


def fake_bin(directory: pathlib.Path) -> pathlib.Path:
  """scontrol and srun stand-ins, and a 'python' that prints what it was given."""
  directory.mkdir()
  scripts = {
      "scontrol": 'echo node07; echo node08\n',
      # Skip srun's options, then run the command once per task, as srun would on each node.
      "srun": ('while [[ "$1" == --* ]]; do shift; done\n'
               'for ((i = 0; i < SLURM_NNODES; i++)); do SLURM_PROCID=$i "$@"; done\n'),
      "python": ('echo "$GAN_JAX_COORDINATOR $GAN_JAX_NUM_PROCESSES $GAN_JAX_PROCESS_ID $*"\n'),
  }
  for name, text in scripts.items():
    path = directory / name
    path.write_text("#!/usr/bin/env bash\n" + text)
    path.chmod(0o755)
  return directory


def test_slurm_starts_one_process_per_node_with_its_index(tmp_path):
  bin_dir = fake_bin(tmp_path / "bin")
  env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
             PYTHON=str(bin_dir / "python"), SLURM_JOB_ID="1234",
             SLURM_JOB_NODELIST="node[07-08]", SLURM_NNODES="2")
  env.pop("COORDINATOR_PORT", None)
  result = subprocess.run(["bash", str(SLURM), "configs/tiny.py", "runs/x",
                           "--config.train.batch_size=64"], capture_output=True, text=True,
                          env=env, timeout=60)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == "gan_jax: 2 processes, coordinator node07:21234, workdir runs/x"
  flags = "-m gan_jax.main --config configs/tiny.py --workdir runs/x --config.train.batch_size=64"
  assert lines[1:] == [f"node07:21234 2 {i} {flags}" for i in range(2)]


def run_local(*args, **env):
  return subprocess.run(["bash", str(LOCAL), *args], capture_output=True, text=True, cwd=REPO_ROOT,
                        env=dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS="cpu",
                                 XLA_FLAGS="", **env), timeout=300)


def test_local_usage_and_config_errors():
  result = run_local()
  assert result.returncode == 2
  assert "usage: bash launch/local.sh CONFIG WORKDIR" in result.stderr
  result = run_local("configs/nope.py", "/tmp/unused")
  assert result.returncode == 2
  assert "error: config file configs/nope.py not found" in result.stderr
  result = run_local("configs/tiny.py", "/tmp/unused", GAN_JAX_CPU_DEVICES="0")
  assert "error: GAN_JAX_CPU_DEVICES=0 must be a positive integer" in result.stderr


def test_batch_not_divisible_by_devices_is_one_clear_line(tmp_path):
  """Before the data is read (the path does not exist) and before anything compiles."""
  result = run_local("configs/tiny.py", str(tmp_path), "--config.train.batch_size=30",
                     f"--config.data.path={tmp_path / 'no_such_folder'}", GAN_JAX_CPU_DEVICES="4")
  assert result.returncode == 1, result.stderr[-3000:]
  assert result.stderr.strip().splitlines()[-1] == (
      "error: train.batch_size=30 is not divisible by the 4 devices; use a multiple of 4 "
      "(e.g. --config.train.batch_size=28)")
  assert "Traceback" not in result.stderr


def test_incomplete_distributed_flags_are_one_clear_line(tmp_path):
  result = run_local("configs/tiny.py", str(tmp_path), "--num_processes=2")
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      "error: --num_processes given without --coordinator_address, --process_id: a multi-process "
      "run needs all of --coordinator_address, --num_processes, --process_id (or none, for one "
      "process)")
