"""`python -m gan_jax.project`: recovering the latent of a generated face."""

import numpy as np
import pytest
from PIL import Image

from gan_jax.explore import generate
from gan_jax.explore import interpolate
from gan_jax.explore import project
from gan_jax.explore import loader
from gan_jax.explore import latents as latent_lib


def test_projects_a_generated_face(tiny_workdir, tmp_path):
  assert generate.main(["--workdir", str(tiny_workdir), "--num", "3", "--seed", "4",
                        "--out", str(tmp_path / "gen")]) == 0
  image = tmp_path / "gen" / "seed0004_00002.png"
  out = tmp_path / "proj"
  assert project.main(["--workdir", str(tiny_workdir), "--image", str(image), "--out", str(out),
                       "--steps", "200", "--restarts", "2"]) == 0
  target = np.asarray(Image.open(out / "seed0004_00002_target.png"), np.float32) / 127.5 - 1
  recon = np.asarray(Image.open(out / "seed0004_00002_projection.png"), np.float32) / 127.5 - 1
  np.testing.assert_array_equal(target, np.asarray(Image.open(image), np.float32) / 127.5 - 1)
  mse = float(np.mean((target - recon) ** 2))
  assert mse < 2e-3, mse
  latent = np.load(out / "seed0004_00002.npy")
  assert latent.shape == (16,)
  # The latent is an interpolation keyframe.
  assert interpolate.main(["--workdir", str(tiny_workdir), "--latents",
                           f"{out}/seed0004_00002.npy,{out}/seed0004_00002.npy",
                           "--frames", "2", "--out", str(tmp_path / "same.png")]) == 0


def test_discriminator_feature_loss_is_deterministic_and_falls(tiny_workdir):
  model = loader.load(tiny_workdir, discriminator=True)
  target = model.generate(latent_lib.latents(9, 1, model.latent_dim))[0]
  result = project.project(model, target, steps=100, restarts=2, feature_loss="discriminator")
  assert result.latent.shape == (16,) and result.image.shape == (16, 16, 3)
  assert result.restart_losses.shape == (2,) and result.loss_curve.shape == (100,)
  assert result.loss_curve[-1] < 0.2 * result.loss_curve[0]
  again = project.project(model, target, steps=100, restarts=2, feature_loss="discriminator")
  np.testing.assert_array_equal(result.latent, again.latent)


def test_user_errors(tiny_workdir, tmp_path, capsys):
  args = ["--workdir", str(tiny_workdir), "--out", str(tmp_path)]
  assert project.main(args + ["--image", str(tmp_path / "missing.jpg")]) == 1
  assert "does not exist" in capsys.readouterr().err
  (tmp_path / "broken.jpg").write_bytes(b"not an image")
  assert project.main(args + ["--image", str(tmp_path / "broken.jpg")]) == 1
  assert "cannot read image" in capsys.readouterr().err


def test_help_lists_flags(capsys):
  with pytest.raises(SystemExit) as exit_info:
    project.main(["--help"])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  for flag in ("--workdir", "--image", "--out", "--steps", "--restarts", "--feature_loss"):
    assert flag in text
