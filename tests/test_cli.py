"""The command-line conventions (gan_jax/cli.py): --help exits 0; a user error, one line, exit 1."""

import argparse
import importlib.util
import pathlib
import re
import runpy
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import MAIN_WITHOUT_TENSORFLOW, REPO_ROOT, subprocess_env
import gan_jax
from gan_jax import cli, errors
from gan_jax.metrics import weights

# The commands that parse flags with absl (each defines --config, so one process each).
ABSL_COMMANDS = ("gan_jax.main", "gan_jax.bench", "gan_jax.models")


def documented_commands() -> list[str]:
  """Every `python -m gan_jax.<command>` that README.md and docs/ name."""
  texts = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
  found = set()
  for path in texts:
    found.update(re.findall(r"python -m (gan_jax(?:\.[a-z_]+)+)", path.read_text()))
  return sorted(found)


def run_module(name: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", name, *args], capture_output=True, text=True,
                        cwd=REPO_ROOT, timeout=300)


def test_the_docs_name_the_commands():
  commands = documented_commands()
  assert set(ABSL_COMMANDS) < set(commands)
  assert {"gan_jax.prepare", "gan_jax.plots", "gan_jax.evaluate",
          "gan_jax.report"} < set(commands)


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy: imported
@pytest.mark.parametrize("command", [c for c in documented_commands() if c not in ABSL_COMMANDS])
def test_argparse_command_help_exits_0(command, monkeypatch, capsys):
  """As `python -m COMMAND --help` runs it, in this process (one interpreter start saved each)."""
  monkeypatch.setattr(sys, "argv", [command, "--help"])
  with pytest.raises(SystemExit) as exit_info:
    runpy.run_module(command, run_name="__main__", alter_sys=True)
  assert exit_info.value.code == 0
  assert capsys.readouterr().out.startswith(f"usage: python -m {command} ")


def test_commands_in_subpackages_run_by_their_short_names(tmp_path):
  """`python -m gan_jax.plots` runs gan_jax/monitor/plots.py (gan_jax.COMMANDS), from any
  folder, with no module of that name at the top of the package."""
  for name, module in gan_jax.COMMANDS.items():
    assert not (REPO_ROOT / "gan_jax" / f"{name}.py").exists(), name
    assert importlib.util.find_spec(module).origin.endswith(module.replace(".", "/") + ".py")
  result = subprocess.run([sys.executable, "-m", "gan_jax.plots", "--help"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
  assert result.returncode == 0 and result.stdout.startswith("usage: python -m gan_jax.plots ")
  assert importlib.util.find_spec("gan_jax.no_such_command") is None


@pytest.mark.parametrize("command", ABSL_COMMANDS)
def test_absl_command_help_exits_0(command):
  result = run_module(command, "--help")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "--config" in result.stdout and "Traceback" not in result.stderr


def test_absl_command_user_error_is_one_line_and_exit_1():
  result = run_module("gan_jax.models", "--config", "configs/tiny.py",
                      "--config.data.resolution=24")
  assert result.returncode == 1
  assert result.stderr.splitlines() == [
      "error: data.resolution=24 is not 4 or 9 times a power of two >= 2 "
      "(use 8, 16, 32, 36, 64, 128, ...)"]


def test_argparse_command_user_error_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(sys, "argv", ["gan_jax.plots", str(tmp_path)])
  with pytest.raises(SystemExit) as exit_info:
    runpy.run_module("gan_jax.plots", run_name="__main__", alter_sys=True)
  assert exit_info.value.code == 1
  assert capsys.readouterr().err.splitlines() == [
      f"error: {tmp_path} has no metrics.jsonl and no samples/step_*.png; pass the --workdir of "
      "a training run"]


def make_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.example")
  parser.add_argument("--count", type=cli.positive_int, default=1)
  parser.add_argument("--seeds", type=cli.int_list, default=[0])
  return parser


def test_run_cli_exit_codes(capsys):
  def run(args):
    if args.count == 2:
      raise errors.DataError("no faces under x; give a folder of images")
    if args.count == 3:
      raise OSError("disk full")
    if args.count == 4:
      raise RuntimeError("a bug")
    return 5 if args.count == 5 else None

  parser = make_parser()
  assert cli.run_cli(parser, run, []) == 0
  assert cli.run_cli(parser, run, ["--count", "5"]) == 5
  assert cli.run_cli(parser, run, ["--count", "2"]) == 1
  assert capsys.readouterr().err == "error: no faces under x; give a folder of images\n"
  assert cli.run_cli(parser, run, ["--count", "3"], also=(OSError,)) == 1
  assert capsys.readouterr().err == "error: disk full\n"
  with pytest.raises(OSError):  # not named as the user's: the traceback stays
    cli.run_cli(parser, run, ["--count", "3"])
  with pytest.raises(RuntimeError):
    cli.run_cli(parser, run, ["--count", "4"])
  for bad in (["--count", "0"], ["--seeds", "1,x"]):
    with pytest.raises(SystemExit) as exit_info:  # argparse's own: usage, exit code 2
      cli.run_cli(parser, run, bad)
    assert exit_info.value.code == 2
  assert "usage: python -m gan_jax.example" in capsys.readouterr().err


def test_exit_on_user_error(capsys):
  @cli.exit_on_user_error(KeyError)
  def main(problem):
    raise problem

  with pytest.raises(SystemExit) as exit_info:
    main(errors.ConfigError("--config.train.batch_size=0 must be >= 1"))
  assert exit_info.value.code == 1
  assert capsys.readouterr().err == "error: --config.train.batch_size=0 must be >= 1\n"
  with pytest.raises(SystemExit):
    main(KeyError("x"))
  with pytest.raises(ValueError):
    main(ValueError("a bug"))


def test_missing_inception_weights_are_a_user_error():
  assert weights.WeightsError is errors.WeightsError
  assert issubclass(weights.WeightsError, errors.UserError)


# --- --config by any path, from any folder ---

def run_main_in(folder: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
  """`python -m gan_jax.main ARGS` (TensorFlow blocked) with `folder` as the current folder."""
  return subprocess.run([sys.executable, *MAIN_WITHOUT_TENSORFLOW, *args], cwd=folder,
                        env=subprocess_env(1), capture_output=True, text=True, timeout=300)


def test_configs_run_from_another_folder(tmp_path):
  faces = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), np.uint8)
  np.save(tmp_path / "faces.npy", faces)
  # A user's config beside the data, built on a project config that is not beside it.
  (tmp_path / "mine.py").write_text(
      "from gan_jax.config import files\n\n"
      "tiny = files.base(__file__, 'tiny')\n\n\n"
      "def get_config():\n"
      "  config = tiny.get_config()\n"
      "  config.train.batch_size, config.train.num_steps = 8, 2\n"
      "  return config\n")
  result = run_main_in(tmp_path, "--config", "mine.py", "--workdir", "run",
                       "--config.data.path=faces.npy", "--config.log_every=1")
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / "run" / "checkpoints" / "2").is_dir()
  # A copy of a project config that builds on another one (faces32_best on faces32_diffaug),
  # and a project config by its absolute path: both load from here.
  shutil.copy(REPO_ROOT / "configs" / "faces32_best.py", tmp_path / "my_best.py")
  for path in (tmp_path / "my_best.py", REPO_ROOT / "configs" / "faces32_best.py"):
    result = subprocess.run([sys.executable, "-m", "gan_jax.models", "--config", str(path)],
                            cwd=tmp_path, env=subprocess_env(1), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_mistyped_config_path_is_one_line(tmp_path):
  result = run_main_in(tmp_path, "--config", "configs/tny.py", "--workdir", "run")
  assert result.returncode == 1
  assert result.stderr.splitlines() == [
      f"error: --config configs/tny.py: no such file in the current folder {tmp_path}; give the "
      f"path of a config file, e.g. {REPO_ROOT / 'configs' / 'tiny.py'}"]
  assert not (tmp_path / "run").exists()
