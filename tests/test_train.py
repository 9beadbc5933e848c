"""End-to-end training on real faces, and the command line."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import MAIN_WITHOUT_TENSORFLOW, REPO_ROOT, pixel_frechet, subprocess_env
from configs import tiny
from gan_jax.training import family
from gan_jax import cadence, train
from gan_jax.training.state import create_state


def test_periodic_actions_are_due_every_n_steps_and_at_the_last():
  assert [step for step in range(1, 13) if cadence.is_due(step, 5, 12)] == [5, 10, 12]
  assert [step for step in range(1, 13) if cadence.is_due(step, 5)] == [5, 10]
  assert not any(cadence.is_due(step, 0, 12) for step in range(1, 13))  # 0: the action is off


@pytest.mark.slow
def test_tiny_learns_real_faces(faces_dir, faces16, tmp_path):
  """Pixel-space Fréchet distance to real faces at least halves from initialisation."""
  config = tiny.get_config()
  config.data.path, config.data.limit = str(faces_dir), 2000
  config.train.num_steps, config.sample_every, config.checkpoint_every = 400, 400, 400
  gan = family.bundle(config)
  initial = pixel_frechet(gan, create_state(gan, jax.random.key(config.seed)), faces16)
  final_state = train.train_and_evaluate(config, str(tmp_path))
  final = pixel_frechet(gan, final_state, faces16)
  print(f"pixel Fréchet distance: {initial:.2f} at init -> {final:.2f} after 400 steps")
  assert final <= 0.5 * initial
  assert (tmp_path / "samples" / "step_0000400.png").is_file()


def run_main(*args, devices=None):
  # Without `devices`, conftest's 8 fake devices, as in this process.
  env = subprocess_env(devices) if devices else dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, *MAIN_WITHOUT_TENSORFLOW, *args], capture_output=True,
                        text=True, cwd=REPO_ROOT, env=env, timeout=600)


def test_main_trains_celeba64_and_writes_samples(faces_dir, tmp_path):
  result = run_main("--config", "configs/celeba64.py", "--workdir", str(tmp_path),
                    f"--config.data.path={faces_dir}", "--config.data.limit=64",
                    "--config.train.batch_size=16", "--config.train.num_steps=2",
                    "--config.model.width=8", "--config.log_every=1", devices=2)
  assert result.returncode == 0, result.stderr[-3000:]
  for name in ("d_loss=", "g_loss=", "d_real=", "d_fake="):
    assert name in result.stderr
  assert (tmp_path / "samples" / "step_0000002.png").is_file()


def test_main_without_flags_prints_usage():
  result = run_main()
  assert result.returncode != 0
  assert "--config" in result.stderr and "--workdir" in result.stderr


@pytest.mark.parametrize("override, message", [
    ("--config.train.batch_sise=8", "error: --config.train.batch_sise: the config has no option "
     "'train.batch_sise'. Did you mean --config.train.batch_size"),
    ("--config.trian.batch_size=8", "Did you mean --config.train.batch_size"),  # a section
    ("--config.train.log_every=5", "Did you mean --config.log_every?"),  # in another section
])
def test_unknown_config_key_is_one_line_naming_the_option(tmp_path, override, message):
  result = run_main("--config", "configs/tiny.py", "--workdir", str(tmp_path), override)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith(f"error: {override.split('=')[0]}: the config has no option ")
  assert message in last_line and last_line.endswith(
      "gan_jax/config/defaults.py lists every option (docs/options.md explains them).")


@pytest.mark.parametrize("data, override, message", [
    ("nowhere", "--config.seed=0", "error: data path '{path}' does not exist; set "
     "--config.data.path to a folder of face images, a prepared directory or a .npy file"),
    ("faces.npy", "--config.seed=0", "error: train.batch_size=32 is larger than the data set "
     "(10 images); lower the batch size or add images"),
    ("faces.npy", "--config.data.resolution=24", "error: data.resolution=24 is not 4 or 9 times "
     "a power of two >= 2 (use 8, 16, 32, 36, 64, 128, ...)"),
])
def test_bad_data_or_options_are_one_line(tmp_path, data, override, message):
  np.save(tmp_path / "faces.npy", np.zeros((10, 16, 16, 3), np.uint8))
  path = tmp_path / data
  result = run_main("--config", "configs/tiny.py", "--workdir", str(tmp_path / "run"),
                    f"--config.data.path={path}", override)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == message.format(path=path)


def test_batch_not_divisible_by_devices(faces_dir, tmp_path):
  result = run_main("--config", "configs/tiny.py", "--workdir", str(tmp_path),
                    f"--config.data.path={faces_dir}", "--config.train.batch_size=12", devices=8)
  assert result.returncode != 0
  assert "train.batch_size=12 is not divisible by the 8 devices" in result.stderr
