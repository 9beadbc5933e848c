"""A checkpoint written by the code before the restructure (commit 6eb5e45) reads, resumes and
samples as that code did.

tests/golden/checkpoint_6eb5e45/ holds a workdir of configs/tiny.py shrunk to
width 4 and latent_dim 8 (batch 8, EMA 0.9, 2 steps on the first 64 faces),
and what the old code printed, saved and generated from it; expected.json says
how each was made. The checkpoint's own fingerprint is compared exactly. What
the current code computes from it (4 more steps, samples) is compared with the
old code's results to float tolerance: both were recorded on one CPU, and
XLA:CPU may order its sums differently on another (on the recording machine
they are equal bit for bit: docs/reproducibility.md). A changed data order,
key or layout moves the weights by orders of magnitude more.
"""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT
from gan_jax import checkpoint, train
from gan_jax.checkpoint import __main__ as command
from gan_jax.explore import generate, loader
from gan_jax.explore import latents as latent_lib

GOLDEN = REPO_ROOT / "tests" / "golden" / "checkpoint_6eb5e45"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())


@pytest.fixture
def workdir(tmp_path) -> pathlib.Path:
  """A writable copy of the old workdir (resuming writes into it)."""
  return pathlib.Path(shutil.copytree(GOLDEN / "workdir", tmp_path / "run"))


def fingerprint_line(workdir: pathlib.Path) -> str:
  step, tree = checkpoint.restore_tree(workdir)
  return f"step {step} sha256 {checkpoint.fingerprint(tree)}"


def test_fingerprint_command_prints_the_old_fingerprint(workdir, capsys):
  assert command.main(["fingerprint", str(workdir)]) == 0
  assert capsys.readouterr().out.strip() == EXPECTED["fingerprint"]


@pytest.mark.slow
def test_resumes_to_the_old_codes_weights(workdir, faces_dir, tmp_path):
  assert jax.device_count() == 8  # the old code's resumed arrays were saved on 8 devices
  config = checkpoint.load_config(workdir)
  # What may change on resume: the run's length and where the faces and their cache are.
  config.train.num_steps = 4
  config.data.path, config.data.cache_dir = str(faces_dir), str(tmp_path / "prepared")
  train.train_and_evaluate(config, str(workdir))
  step, tree = checkpoint.restore_tree(workdir)
  assert step == 4
  resumed = checkpoint.named_leaves(tree)
  with np.load(GOLDEN / "resumed_step4_arrays.npz") as old:
    assert sorted(resumed) == sorted(old.files)
    for name in old.files:
      np.testing.assert_allclose(np.asarray(resumed[name]), old[name], rtol=1e-4, atol=1e-6,
                                 err_msg=name)
  print("bitwise equal to the old code's run:",
        fingerprint_line(workdir) == EXPECTED["resumed_to_step_4"]["8"])


def test_loads_and_samples_the_old_codes_images(workdir):
  model = loader.load(workdir)
  assert (model.step, model.latent_dim, model.resolution, model.uses_ema) == (2, 8, 16, True)
  z = latent_lib.latents(0, 4, model.latent_dim)
  np.testing.assert_allclose(model.generate(z), np.load(GOLDEN / "images_seed0.npy"), atol=1e-5)
  images, _ = generate.generate(model, seed=0, num=4)
  # The pixels sit near 127.5 after 2 steps, so a float difference may round the other way.
  old = np.load(GOLDEN / "images_seed0_uint8.npy").astype(int)
  assert np.abs(images.astype(int) - old).max() <= 1
