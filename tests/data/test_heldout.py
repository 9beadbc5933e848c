"""Held-out faces: data.holdout, `prepare --holdout`, and evaluation against them.

The split is checked on small synthetic arrays (data.holdout=10 on 60 images
trains on exactly what data.limit=50 gives, as data.holdout=1000 on the 6,000
faces does what data.limit=5000 did). Evaluation uses one tiny 16 px run
trained 4 steps on 128 random images with data.holdout=32 and periodic
pixel-feature evaluation; `evaluate run` must report what training logged,
and the floor must be FID/KID of the first training faces vs the held-out ones.
"""

import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from configs import tiny
from gan_jax import streams, train
from gan_jax.data import loader as data_loader
from gan_jax.data import prepare, prepared_files
from gan_jax.errors import ConfigError
from gan_jax.eval import evaluate
from gan_jax.eval import evaluator as evaluator_lib
from gan_jax.explore import latents as latent_lib
from gan_jax.explore import loader
from gan_jax.metrics import fid

NUM_SAMPLES, BATCH, HOLDOUT = 48, 16, 32
HELDOUT_METRICS = {"fid_heldout", "kid_heldout", "kid_std_heldout", "fid_floor_heldout",
                   "kid_floor_heldout", "kid_std_floor_heldout"}


def random_images(count, size, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


@pytest.fixture()
def sixty(tmp_path):
  path = tmp_path / "sixty.npy"
  np.save(path, random_images(60, 8))
  return path


def test_holdout_trains_on_what_limit_gives_and_sets_the_end_aside(sixty):
  everything = np.load(sixty)
  split = data_loader.data_split(sixty, 8, holdout=10)
  np.testing.assert_array_equal(split.training, data_loader.training_images(sixty, 8, limit=50))
  np.testing.assert_array_equal(split.training, everything[:50])
  np.testing.assert_array_equal(split.heldout, everything[50:])
  assert (split.training_file, split.heldout_file, split.heldout_start) == (str(sixty),) * 2 + (50,)
  # data.limit applies to what is left after the held-out faces.
  np.testing.assert_array_equal(data_loader.training_images(sixty, 8, limit=20, holdout=10),
                                everything[:20])
  assert len(data_loader.training_images(sixty, 8, limit=55, holdout=10)) == 50
  assert data_loader.data_split(sixty, 8).heldout is None


def test_training_loads_the_same_faces_with_holdout_as_with_limit(sixty):
  configs = [tiny.get_config() for _ in range(2)]
  for config in configs:
    config.data.path, config.data.resolution, config.data.pipeline = str(sixty), 8, "numpy"
  configs[0].data.holdout, configs[1].data.limit = 10, 50
  (held, _), (limited, _) = (train.load_faces(config) for config in configs)
  assert held.shape == (50, 8, 8, 3)
  np.testing.assert_array_equal(held, limited)


@pytest.mark.parametrize("holdout, message", [
    (60, "data.holdout=60 would set aside all 60 images of {path}; use fewer than 60"),
    (-1, "data.holdout=-1 must be >= 0"),
])
def test_bad_holdout_is_one_line(sixty, holdout, message):
  with pytest.raises(ConfigError) as error:
    data_loader.training_images(sixty, 8, holdout=holdout)
  assert str(error.value).startswith(message.format(path=sixty)) and "\n" not in str(error.value)


@pytest.fixture()
def folder(tmp_path):
  folder = tmp_path / "faces"
  folder.mkdir()
  for index, image in enumerate(random_images(12, 10, seed=1)):
    Image.fromarray(image).save(folder / f"{index:03d}.png")
  return folder


def test_prepare_holdout_writes_both_parts_as_data_holdout_splits_the_folder(folder, tmp_path,
                                                                              capsys):
  out = tmp_path / "prepared"
  assert prepare.main(["--source", f"folder:{folder}", "--resolution", "8", "--out", str(out),
                       "--holdout", "3"]) == 0
  assert "held out the last 3" in capsys.readouterr().out
  prepared = prepared_files.open_prepared(out, 8)
  assert prepared.images.shape == (9, 8, 8, 3) and prepared.heldout.shape == (3, 8, 8, 3)
  meta = prepared.metadata
  assert (meta["count"], meta["heldout"]["count"], meta["heldout"]["file"]) == (9, 3, "heldout.npy")
  assert meta["heldout"]["sha256"] == prepare.hashlib.sha256(prepared.heldout.tobytes()).hexdigest()
  assert meta["sha256"] == prepare.hashlib.sha256(prepared.images.tobytes()).hexdigest()

  # The raw folder with data.holdout=3 gives the same two arrays.
  raw = data_loader.data_split(folder, 8, cache_dir=tmp_path / "cache", holdout=3)
  np.testing.assert_array_equal(raw.training, prepared.images)
  np.testing.assert_array_equal(raw.heldout, prepared.heldout)
  # The prepared folder as data.path: trains on the rest, its held-out faces come along.
  split = data_loader.data_split(out, 8, limit=5)
  np.testing.assert_array_equal(split.training, prepared.images[:5])
  np.testing.assert_array_equal(split.heldout, prepared.heldout)
  assert (split.heldout_file, split.heldout_start) == (str(out / "heldout.npy"), 0)
  with pytest.raises(ConfigError, match="already holds 3 held-out faces"):
    data_loader.data_split(out, 8, holdout=2)

  # Prepared again without --holdout: one array of all 12, no stale held-out file.
  whole = prepare.prepare(f"folder:{folder}", 8, out_dir=out, progress=False)
  assert whole.heldout is None and not (out / "heldout.npy").exists()
  np.testing.assert_array_equal(whole.images, np.concatenate([raw.training, raw.heldout]))


def test_prepare_refuses_a_holdout_of_everything(folder, tmp_path, capsys):
  out = tmp_path / "prepared"
  assert prepare.main(["--source", f"folder:{folder}", "--resolution", "8", "--out", str(out),
                       "--holdout", "12"]) == 1
  error = capsys.readouterr().err
  assert error == ("error: --holdout 12 would set aside all 12 images of the source; "
                   "give fewer than 12\n")
  assert not out.exists()


def test_lead_style_limit_run_evaluates_against_the_rest(sixty):
  """A run trained with data.limit=50 (no holdout) on 60 faces: --heldout 10 is its unseen rest."""
  data = tiny.get_config().data
  data.path, data.resolution, data.limit = str(sixty), 8, 50
  everything = np.load(sixty)
  split = evaluator_lib.evaluation_split(data, heldout=10)
  np.testing.assert_array_equal(split.training, everything[:50])
  np.testing.assert_array_equal(split.heldout, everything[50:])
  assert evaluator_lib.evaluation_split(data).heldout is None
  with pytest.raises(ConfigError, match=re.escape(
      "--heldout=11: the run trained on 50 of the 60 images of")):
    evaluator_lib.evaluation_split(data, heldout=11)


def test_heldout_features_are_cached_by_file_start_and_count(sixty, tmp_path, monkeypatch):
  monkeypatch.setenv("GAN_JAX_CACHE", str(tmp_path / "cache"))
  calls = []

  def features(images, batch_size):  # stands in for Inception: the mean colour of each image
    calls.append(len(images))
    return np.asarray(images, np.float32).mean(axis=(1, 2))

  monkeypatch.setattr(fid.inception, "extract_features", features)
  split = data_loader.data_split(sixty, 8, holdout=10)
  held = evaluator_lib.real_statistics(split.heldout, split.heldout_file, split.heldout_start,
                                       "inception")
  training = evaluator_lib.real_statistics(split.training, split.training_file, 0, "inception")
  again = evaluator_lib.real_statistics(split.heldout, split.heldout_file, 50, "inception")
  assert calls == [10, 50]  # the second held-out read came from the cache
  np.testing.assert_array_equal(again.features, held.features)
  np.testing.assert_array_equal(held.features, np.load(sixty)[50:].mean(axis=(1, 2)))
  assert len(training.features) == 50
  # From the first image the cache key is what it was before held-out faces existed.
  assert (fid.statistics_cache_path(sixty, None, 50)
          != fid.statistics_cache_path(sixty, None, 10, start=50))


# --- evaluation of a run with held-out faces ----------------------------------------------------

@pytest.fixture(scope="module")
def heldout_run(tmp_path_factory):
  data = tmp_path_factory.mktemp("heldout_data") / "faces.npy"
  np.save(data, random_images(96 + HOLDOUT, 16, seed=2))
  config = tiny.get_config()
  config.data.path, config.data.holdout = str(data), HOLDOUT
  config.train.num_steps, config.checkpoint_every = 4, 4
  config.log_every, config.sample_every = 2, 4
  config.eval.every, config.eval.num_samples = 2, NUM_SAMPLES
  config.eval.features, config.eval.batch_size = "pixels", BATCH
  workdir = tmp_path_factory.mktemp("heldout_run")
  train.train_and_evaluate(config, str(workdir))
  return workdir, np.load(data)


def logged(workdir):
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: r for r in records if "eval/fid" in r}


def test_training_logs_heldout_metrics_and_the_floor(heldout_run):
  workdir, _ = heldout_run
  records = logged(workdir)
  assert sorted(records) == [2, 4]
  for record in records.values():
    assert all(math.isfinite(record[f"eval/{name}"]) for name in HELDOUT_METRICS)
  # The floor does not depend on the generator.
  assert records[2]["eval/fid_floor_heldout"] == records[4]["eval/fid_floor_heldout"]


def test_evaluate_run_reports_heldout_metrics_and_floor(heldout_run, capsys):
  workdir, faces = heldout_run
  assert evaluate.main(["run", "--workdir", str(workdir), "--features", "pixels",
                        "--num_samples", str(NUM_SAMPLES), "--batch", str(BATCH)]) == 0
  out = capsys.readouterr().out
  result = json.loads((workdir / "eval" / "metrics_step_4_pixels.json").read_text())
  assert HELDOUT_METRICS <= set(result)
  assert (result["num_real"], result["num_heldout"], result["num_floor"]) == (96, HOLDOUT,
                                                                               NUM_SAMPLES)
  assert f"FID {result['fid_heldout']:.4f}" in out and "floor (48 training faces" in out
  record = logged(workdir)[4]
  for name in ("fid", "kid", "fid_heldout", "kid_heldout", "fid_floor_heldout"):
    assert result[name if name != "kid" else "kid_mean"] == record[f"eval/{name}"], name

  # Known values: the floor is the first 48 training faces vs the 32 held-out ones, and the
  # held-out FID is the samples against those 32 alone.
  training, heldout = faces[:96], faces[96:]
  stats = [fid.statistics_of(evaluator_lib.pixel_features(x)) for x in (training[:48], heldout)]
  floor = evaluator_lib.feature_metrics(*stats)
  assert (result["fid_floor_heldout"], result["kid_floor_heldout"]) == (floor["fid"], floor["kid"])
  model = loader.load(workdir)
  latents = latent_lib.latents(streams.EVAL_SEED, NUM_SAMPLES, model.latent_dim)
  alone = evaluator_lib.Evaluator(stats[1], latents, "pixels", BATCH).evaluate(model.generate)
  assert (result["fid_heldout"], result["kid_heldout"]) == (alone["fid"], alone["kid"])


def test_library_call_and_heldout_choices(heldout_run, capsys):
  workdir, _ = heldout_run
  result, path = evaluate.evaluate_checkpoint(workdir, 4, NUM_SAMPLES, "pixels",
                                              batch_size=BATCH, heldout=20)
  assert path.name == "metrics_step_4_pixels.json" and result["num_heldout"] == 20
  result, _ = evaluate.evaluate_checkpoint(workdir, 4, NUM_SAMPLES, "pixels", batch_size=BATCH,
                                           heldout=0)
  assert not HELDOUT_METRICS & set(result) and "num_heldout" not in result
  assert evaluate.main(["run", "--workdir", str(workdir), "--features", "pixels",
                        "--num_samples", "8", "--heldout", "40"]) == 1
  error = capsys.readouterr().err
  assert error.startswith("error: --heldout=40: the run trained on 96 of the 128 images")
  assert "use --heldout <= 32" in error and error.count("\n") == 1
