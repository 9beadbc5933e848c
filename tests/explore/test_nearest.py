"""`python -m gan_jax.nearest`: the memorisation check."""

import json

import numpy as np
import pytest
from PIL import Image

from configs import tiny
from gan_jax.data import loader as data_loader
from gan_jax.explore import generate
from gan_jax.explore import nearest
from gan_jax.explore import loader


@pytest.fixture(scope="module")
def planted_data(tiny_workdir, faces16, tmp_path_factory):
  """Real faces with generated sample 1 of seed 2 planted at index 40: a 'memorised' face."""
  model = loader.load(tiny_workdir)
  samples, _ = generate.generate(model, seed=2, num=3)
  data = np.concatenate([faces16[:40], samples[1:2], faces16[40:200]])
  path = tmp_path_factory.mktemp("planted") / "data.npy"
  np.save(path, data)
  return path


@pytest.mark.parametrize("space", ["pixels", "discriminator"])
def test_finds_a_planted_copy(tiny_workdir, planted_data, tmp_path, space):
  out = tmp_path / "nearest.png"
  assert nearest.main(["--workdir", str(tiny_workdir), "--data", str(planted_data), "--num", "3",
                       "--seed", "2", "--k", "4", "--space", space, "--zoom", "1",
                       "--out", str(out)]) == 0
  report = json.loads(out.with_suffix(".json").read_text())
  assert report["indices"][1][0] == 40
  assert report["distances"][1][0] == pytest.approx(0.0, abs=1e-3)
  assert min(report["distances"][0][0], report["distances"][2][0]) > 1e-2
  assert len(report["baseline"]) == 200 and min(report["baseline"]) > 0
  with Image.open(out) as picture:  # 3 rows x (sample + 4 neighbours) of 16 px, 2 px padding
    assert picture.size == (5 * 18 + 2, 3 * 18 + 2)


def test_data_defaults_to_the_runs_data(tiny_workdir, tmp_path, capsys):
  out = tmp_path / "nearest.png"
  assert nearest.main(["--workdir", str(tiny_workdir), "--num", "2", "--k", "2",
                       "--baseline", "0", "--out", str(out)]) == 0
  text = capsys.readouterr().out
  assert "data: 512 images" in text and "for scale" not in text
  assert out.is_file()


def test_user_errors(tiny_workdir, tmp_path, capsys):
  args = ["--workdir", str(tiny_workdir), "--out", str(tmp_path / "n.png")]
  assert nearest.main(args + ["--data", str(tmp_path / "missing")]) == 1
  # gan_jax.nearest has --data, not --config.data.path: the message must not send users there
  assert capsys.readouterr().err.strip() == (
      f"error: data path '{tmp_path / 'missing'}' does not exist; give a folder of face images, "
      "a prepared directory or a .npy file")
  assert nearest.main(args + ["--k", "100000"]) == 1
  assert "--k must be between 1 and the 512" in capsys.readouterr().err


def test_help_lists_flags(capsys):
  with pytest.raises(SystemExit) as exit_info:
    nearest.main(["--help"])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  for flag in ("--workdir", "--data", "--num", "--k", "--space", "--out"):
    assert flag in text


def test_training_faces_are_the_runs_training_split(tmp_path):
  """data.holdout's faces are set aside as training set them aside, data.limit applied after."""
  faces = np.random.default_rng(0).integers(0, 256, (60, 8, 8, 3), np.uint8)
  np.save(tmp_path / "faces.npy", faces)
  config = tiny.get_config()
  config.data.path, config.data.resolution = str(tmp_path / "faces.npy"), 8
  config.data.holdout = 10
  for limit in (0, 20):
    config.data.limit = limit
    searched = nearest.training_faces(config.data, 8, config.data.path)
    np.testing.assert_array_equal(searched, data_loader.run_training_images(config.data))
    np.testing.assert_array_equal(searched, faces[:limit or 50])
  np.testing.assert_array_equal(nearest.training_faces(config.data, 8, config.data.path, limit=5),
                                faces[:5])


def test_heldout_faces_are_never_searched(tiny_workdir, tmp_path, monkeypatch, capsys):
  """A copy of a sample among a run's held-out faces (data.holdout=10) is not found."""
  model = loader.load(tiny_workdir)
  model.config.data.holdout = 10  # the run set the last 10 faces of its data aside
  monkeypatch.setattr(nearest.loader, "load", lambda *args, **kwargs: model)
  samples, _ = generate.generate(model, seed=2, num=3)
  data = np.random.default_rng(0).integers(0, 256, (60, 16, 16, 3), np.uint8)
  data[55] = samples[1]  # held out: training never saw it
  np.save(tmp_path / "data.npy", data)
  out = tmp_path / "nearest.png"
  assert nearest.main(["--workdir", str(tiny_workdir), "--data", str(tmp_path / "data.npy"),
                       "--num", "3", "--seed", "2", "--k", "3", "--baseline", "0",
                       "--out", str(out)]) == 0
  assert "data: 50 images" in capsys.readouterr().out
  report = json.loads(out.with_suffix(".json").read_text())
  assert max(max(row) for row in report["indices"]) < 50
  assert report["distances"][1][0] > 1e-2
