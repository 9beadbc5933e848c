"""`python -m gan_jax.evaluate run`: FID/KID of a training checkpoint against its faces.

Uses the session's tiny trained workdir (conftest `tiny_workdir`: 512 real
16 px faces, checkpoints at steps 10 and 20). Pixel features keep it fast;
one Inception run on 16 + 16 images checks the real network end to end.
"""

import json
import math
import os

import pytest

from gan_jax.eval import evaluate
from gan_jax.metrics import weights

PIXELS = ["--features", "pixels", "--num_samples", "48", "--batch", "16"]


def run(workdir, *flags):
  return evaluate.main(["run", "--workdir", str(workdir), *flags])


def read(path):
  return json.loads(path.read_text())


def test_run_writes_finite_metrics_and_repeats_them(tiny_workdir, capsys):
  assert run(tiny_workdir, "--step", "10", *PIXELS) == 0
  path = tiny_workdir / "eval" / "metrics_step_10_pixels.json"
  first = read(path)
  assert (first["step"], first["num_samples"], first["num_real"]) == (10, 48, 512)
  assert first["features"] == "pixels" and first["checkpoint"] == "saved"
  assert all(math.isfinite(first[name]) for name in ("fid", "kid_mean", "kid_std"))
  assert first["fid"] > 0 and first["date"]
  out = capsys.readouterr().out
  assert f"FID: {first['fid']:.4f}" in out and str(path) in out

  # Seeded latents and a deterministic generator: the same numbers again.
  assert run(tiny_workdir, "--step", "10", *PIXELS) == 0
  second = read(path)
  assert {k: second[k] for k in ("fid", "kid_mean", "kid_std")} == {
      k: first[k] for k in ("fid", "kid_mean", "kid_std")}


def test_run_defaults_to_latest_and_adds_optional_metrics(tiny_workdir):
  assert run(tiny_workdir, *PIXELS, "--seed", "3", "--num_real", "100", "--precision_recall",
             "--one_nn") == 0
  result = read(tiny_workdir / "eval" / "metrics_step_20_pixels.json")
  assert (result["step"], result["num_real"], result["seed"]) == (20, 100, 3)
  for name in ("precision", "recall", "one_nn_accuracy"):
    assert 0.0 <= result[name] <= 1.0


@pytest.fixture(scope="module")
def inception_weights():
  try:
    weights.fetch()
  except (weights.WeightsError, OSError) as error:
    if os.environ.get("CI") == "true":
      pytest.fail(f"FID Inception weights unavailable: {error}")
    pytest.skip(f"FID Inception weights unavailable: {error}")


def test_run_with_inception_features(tiny_workdir, inception_weights):
  # Batch 8 as in test_inception.py, so one compiled network serves both.
  assert run(tiny_workdir, "--features", "inception", "--num_samples", "16", "--num_real", "16",
             "--batch", "8", "--no_cache") == 0
  result = read(tiny_workdir / "eval" / "metrics_step_20.json")
  assert (result["features"], result["num_samples"], result["num_real"]) == ("inception", 16, 16)
  assert math.isfinite(result["fid"]) and result["fid"] > 0
  assert math.isfinite(result["kid_mean"])


def test_run_without_checkpoint_says_train_first(tmp_path, capsys):
  assert run(tmp_path, *PIXELS) == 1
  error = capsys.readouterr().err
  assert error.startswith("error: no checkpoints in") and "train first" in error


def test_run_without_best_checkpoint_says_how_to_keep_one(tiny_workdir, capsys):
  assert run(tiny_workdir, "--best", *PIXELS) == 1
  assert "no best checkpoint" in capsys.readouterr().err


def test_run_refuses_too_few_samples(tiny_workdir, capsys):
  assert run(tiny_workdir, "--features", "pixels", "--num_samples", "1") == 1
  error = capsys.readouterr().err
  assert "--num_samples=1" in error and "at least 2" in error


def test_run_of_missing_step_lists_saved_ones(tiny_workdir, capsys):
  assert run(tiny_workdir, "--step", "15", *PIXELS) == 1
  assert "available steps: 10, 20" in capsys.readouterr().err
