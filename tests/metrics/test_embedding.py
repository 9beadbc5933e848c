"""1-NN two-sample accuracy and the t-SNE/PCA plots."""

import json

import numpy as np
import pytest
from PIL import Image
import threadpoolctl

from gan_jax.eval import evaluate
from gan_jax.metrics import embedding


@pytest.fixture(autouse=True)
def one_thread():
  # Test workers share 2 cores; there t-SNE's spin-waiting OpenMP threads run ~20x slower.
  with threadpoolctl.threadpool_limits(limits=1):
    yield


def test_one_nn_accuracy_half_for_one_distribution():
  rng = np.random.default_rng(0)
  accuracy = embedding.one_nn_accuracy(rng.normal(size=(500, 8)), rng.normal(size=(500, 8)))
  assert abs(accuracy - 0.5) < 0.06  # ~2.5 standard errors of 1,000 coin flips.


def test_one_nn_accuracy_one_for_separable_sets():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(200, 8))
  assert embedding.one_nn_accuracy(real, real + 10.0) == 1.0


def test_one_nn_accuracy_leaves_each_point_out():
  # Copies of the real set: every nearest neighbour is the twin in the other set.
  real = np.random.default_rng(0).normal(size=(50, 4))
  assert embedding.one_nn_accuracy(real, real + 1e-6) == 0.0
  with pytest.raises(ValueError, match="same number"):
    embedding.one_nn_accuracy(real, real[:10])


def test_plots_written(tmp_path):
  rng = np.random.default_rng(0)
  paths = embedding.write_embedding_plots(rng.normal(size=(60, 20)), rng.normal(size=(60, 20)) + 3,
                                          tmp_path / "plots", label="test embeddings")
  assert set(paths) == {"tsne", "pca"}
  for path in paths.values():
    with Image.open(path) as image:
      assert image.format == "PNG" and min(image.size) >= 300


def test_embed_command_with_pixels(tmp_path, capsys):
  rng = np.random.RandomState(0)
  np.save(tmp_path / "real.npy", rng.randint(0, 128, size=(40, 8, 8, 3), dtype=np.uint8))
  np.save(tmp_path / "fake.npy", rng.randint(128, 256, size=(30, 8, 8, 3), dtype=np.uint8))
  out = tmp_path / "out"
  assert evaluate.main(["embed", str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"),
                        "--out", str(out), "--features", "pixels"]) == 0
  result = json.loads((out / "embedding.json").read_text())
  assert result["one_nn_accuracy"] == 1.0 and result["num_per_set"] == 30
  assert (out / "tsne.png").is_file() and (out / "pca.png").is_file()
  assert "1-NN accuracy" in capsys.readouterr().out


def test_embed_command_reports_bad_input(tmp_path, capsys):
  assert evaluate.main(["embed", str(tmp_path / "missing"), str(tmp_path / "missing"),
                        "--out", str(tmp_path / "out"), "--features", "pixels"]) == 1
  assert "does not exist" in capsys.readouterr().err
