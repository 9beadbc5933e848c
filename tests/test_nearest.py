"""`python -m gan_jax.nearest`: the memorisation check."""

import json

import numpy as np
import pytest
from PIL import Image

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
