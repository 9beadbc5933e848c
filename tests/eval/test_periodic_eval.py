"""FID during training (eval.every): logged scalars, the best checkpoint, config errors.

The run resumes the session's tiny workdir (steps 10, 20; trained without
evaluation) to step 30 with pixel-feature evaluation every 5 steps, which also
checks that eval options may change when a run is resumed.
"""

import json
import math
import re
import shutil

import jax
import numpy as np
import pytest

from gan_jax.training import family
from gan_jax import checkpoint, train
from gan_jax.eval import evaluate
from gan_jax.eval import evaluator as evaluator_lib
from gan_jax.errors import ConfigError
from gan_jax.explore import latents as latent_lib
from gan_jax.explore import loader
from gan_jax.metrics import fid

NUM_SAMPLES, BATCH = 48, 16


def eval_config(workdir):
  config = checkpoint.load_config(workdir)
  config.eval.every, config.eval.num_samples = 5, NUM_SAMPLES
  config.eval.features, config.eval.batch_size = "pixels", BATCH
  return config


@pytest.fixture(scope="module")
def eval_run(tiny_workdir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("eval_run")
  shutil.copytree(tiny_workdir / checkpoint.CHECKPOINT_DIR, workdir / checkpoint.CHECKPOINT_DIR)
  config = eval_config(workdir)
  config.train.num_steps = 30
  train.train_and_evaluate(config, str(workdir))
  return workdir


def logged_fids(workdir):
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: r["eval/fid"] for r in records if "eval/fid" in r}, records


def test_training_logs_eval_metrics(eval_run):
  fids, records = logged_fids(eval_run)
  assert sorted(fids) == [25, 30]
  assert all(math.isfinite(value) and value > 0 for value in fids.values())
  kids = [r["eval/kid"] for r in records if "eval/kid" in r]
  assert len(kids) == 2 and all(math.isfinite(k) for k in kids)
  assert list(eval_run.glob("events.out.tfevents.*"))  # TensorBoard got them too


def test_logged_fid_equals_evaluate_run(eval_run):
  fids, _ = logged_fids(eval_run)
  result, _ = evaluate.evaluate_checkpoint(eval_run, 30, NUM_SAMPLES, "pixels", batch_size=BATCH)
  assert result["fid"] == fids[30]


def test_best_checkpoint_is_kept_and_loadable(eval_run):
  fids, _ = logged_fids(eval_run)
  best_dir = eval_run / evaluator_lib.BEST_DIR
  manager = checkpoint.make_manager(best_dir, read_only=True)
  best_step = min(fids, key=fids.get)
  assert manager.all_steps() == [best_step]
  saved = manager.metrics(best_step)
  assert saved["fid"] == fids[best_step]
  settings = (saved["features"], saved["num_samples"], saved["num_real"])
  assert settings == ("pixels", NUM_SAMPLES, 512)

  model = loader.load(best_dir)
  assert model.step == best_step and model.latent_dim == model.config.model.latent_dim
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(model.state.g_params))
  result, path = evaluate.evaluate_checkpoint(eval_run, None, NUM_SAMPLES, "pixels",
                                              batch_size=BATCH, best=True)
  assert (result["step"], result["checkpoint"], result["fid"]) == (best_step, "best",
                                                                   fids[best_step])
  assert path == eval_run / "eval" / f"metrics_step_{best_step}_pixels.json"


def test_resumed_evaluator_keeps_best_only_when_comparable(eval_run):
  fids, _ = logged_fids(eval_run)
  config = eval_config(eval_run)
  gan = family.bundle(config)
  same = evaluator_lib.PeriodicEval(config, eval_run, gan, monitor=None)
  assert same.best_fid == min(fids.values())

  copy = eval_run.parent / "eval_run_other_settings"
  shutil.copytree(eval_run / evaluator_lib.BEST_DIR, copy / evaluator_lib.BEST_DIR)
  config.eval.num_samples = NUM_SAMPLES + 1
  other = evaluator_lib.PeriodicEval(config, copy, gan, monitor=None)
  assert other.best_fid == math.inf
  assert other.best_manager.all_steps() == []  # not comparable: replaced by the next evaluation


def test_evaluator_asks_for_batches_and_measures_the_same_at_any_batch_size():
  """Image i comes from latent i whatever the batching; `generate` is asked a batch at a time."""
  rng = np.random.default_rng(0)
  real = fid.statistics_of(evaluator_lib.pixel_features(
      rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)))
  latents = latent_lib.latents(0, 30, 8 * 8 * 3)
  calls = []

  def generate(z, batch_size):
    calls.append((len(z), batch_size))
    return np.tanh(z).reshape(-1, 8, 8, 3)

  results = [evaluator_lib.Evaluator(real, latents, "pixels", batch_size).evaluate(
      generate, kid_subsets=5, kid_subset_size=10, precision_recall=True) for batch_size in (7, 30)]
  assert calls == [(7, 7)] * 4 + [(2, 7), (30, 30)]
  assert results[0] == results[1]
  assert set(results[0]) == {"fid", "kid", "kid_std", "precision", "recall"}
  assert all(math.isfinite(value) for value in results[0].values())


def test_eval_off_by_default_needs_nothing(tiny_workdir):
  config = checkpoint.load_config(tiny_workdir)
  assert config.eval.every == 0
  evaluator = evaluator_lib.PeriodicEval(config, tiny_workdir, gan=None, monitor=None)
  assert not any(evaluator.is_eval_step(step) for step in range(1, 25))


@pytest.mark.parametrize("option, value, message", [
    ("num_samples", 1, "--config.eval.num_samples=1: FID and KID need at least 2"),
    ("features", "vgg", "--config.eval.features='vgg' is unknown; use one of inception, pixels"),
    ("batch_size", 0, "--config.eval.batch_size=0"),
])
def test_bad_eval_options_are_config_errors(tiny_workdir, option, value, message):
  config = checkpoint.load_config(tiny_workdir)
  config.eval.every = 5
  setattr(config.eval, option, value)
  with pytest.raises(ConfigError, match=re.escape(message)):
    evaluator_lib.PeriodicEval(config, tiny_workdir, gan=None, monitor=None)
