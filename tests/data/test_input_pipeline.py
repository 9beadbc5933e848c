"""The numpy, tf.data and device-resident paths read the same seeded batches."""

import itertools
import subprocess
import sys
import textwrap
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from conftest import REPO_ROOT, subprocess_env
from gan_jax import parallel
from gan_jax.data import pipeline as input_pipeline
from gan_jax.data import prepare
from gan_jax.parallel import BATCH_AXIS

SEED, BATCH, STEPS = 3, 16, 14   # 100 images: 6 steps per epoch, so 14 steps cross two epochs


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(0).integers(0, 256, (100, 4, 6, 3), dtype=np.uint8)


class Counter(NamedTuple):
  step: jax.Array


def collect(state, batch, key):
  """A train step stand-in that returns the global batch it was given."""
  del key
  return Counter(state.step + 1), {"batch": lax.all_gather(batch, BATCH_AXIS, tiled=True)}


def device_path_batches(images, mode, hflip, steps=STEPS):
  step_fn = input_pipeline.device_resident_step(collect, len(images), SEED, BATCH, hflip)
  runner = parallel.DataParallel(step_fn, mode, replicated_data=True)
  on_device = runner.put_replicated(images)
  state, key, batches = runner.put_state(Counter(jnp.zeros((), jnp.int32))), jax.random.key(0), []
  for _ in range(steps):
    state, metrics = runner.step(state, on_device, key)
    if mode == "pmap":
      metrics = jax.tree.map(lambda x: x[0], metrics)
    batches.append(np.asarray(jax.device_get(metrics)["batch"]))
  return batches


@pytest.mark.parametrize("hflip", [False, True])
def test_all_paths_yield_identical_batches(images, hflip):
  expected = [images[input_pipeline.batch_indices(SEED, s, BATCH, len(images))]
              for s in range(STEPS)]
  if hflip:
    for step, batch in enumerate(expected):
      flips = input_pipeline.flip_mask(SEED, step, BATCH)
      assert 0 < flips.sum() < BATCH
      batch[flips] = batch[flips, :, ::-1]
  numpy = list(itertools.islice(input_pipeline.numpy_batches(images, BATCH, SEED, hflip=hflip),
                                STEPS))
  tfdata = list(itertools.islice(input_pipeline.tfdata_batches(images, BATCH, SEED, hflip=hflip),
                                 STEPS))
  device = device_path_batches(images, "shard_map", hflip)
  for step in range(STEPS):
    np.testing.assert_array_equal(numpy[step], expected[step], err_msg=f"numpy, step {step}")
    np.testing.assert_array_equal(tfdata[step], expected[step], err_msg=f"tfdata, step {step}")
    np.testing.assert_array_equal(device[step], expected[step], err_msg=f"device, step {step}")


def test_device_path_under_pmap(images):
  expected = list(itertools.islice(input_pipeline.numpy_batches(images, BATCH, SEED, hflip=True), 8))
  for step, batch in enumerate(device_path_batches(images, "pmap", hflip=True, steps=8)):
    np.testing.assert_array_equal(batch, expected[step])


def test_resuming_at_a_step_reads_the_same_batches(images):
  full = list(itertools.islice(input_pipeline.numpy_batches(images, BATCH, SEED, hflip=True), 9))
  state = input_pipeline.pipeline_state(step=7, seed=SEED)
  assert state == {"step": 7, "seed": SEED}
  start = input_pipeline.start_step_from(state, SEED)
  for make in (input_pipeline.numpy_batches, input_pipeline.tfdata_batches):
    resumed = list(itertools.islice(make(images, BATCH, SEED, start, hflip=True), 2))
    np.testing.assert_array_equal(resumed[0], full[7])
    np.testing.assert_array_equal(resumed[1], full[8])
  with pytest.raises(ValueError, match="resume with --config.seed=3"):
    input_pipeline.start_step_from(state, seed=4)


def test_processes_read_disjoint_shares_of_the_global_batch(images):
  for make in (input_pipeline.numpy_batches, input_pipeline.tfdata_batches):
    shares = [list(itertools.islice(make(images, BATCH, SEED, 0, index, 2), 3)) for index in (0, 1)]
    for step in range(3):
      assert shares[0][step].shape == (BATCH // 2, 4, 6, 3)
      whole = images[input_pipeline.batch_indices(SEED, step, BATCH, len(images))]
      np.testing.assert_array_equal(np.concatenate([shares[0][step], shares[1][step]]), whole)


def test_an_epoch_visits_every_used_example_once(images):
  assert input_pipeline.steps_per_epoch(len(images), BATCH) == 6
  seen = np.concatenate([input_pipeline.batch_indices(SEED, s, BATCH, len(images)) for s in range(6)])
  assert len(set(seen.tolist())) == 6 * BATCH   # 96 of 100: the remainder is dropped


def test_host_batches_arrive_on_the_devices(images):
  runner = parallel.DataParallel(collect)
  batches = input_pipeline.host_batches("numpy", images, runner.put_batch, BATCH, SEED)
  first = next(batches)
  assert isinstance(first, jax.Array) and len(first.sharding.device_set) == jax.device_count()
  np.testing.assert_array_equal(np.asarray(first), images[input_pipeline.batch_indices(SEED, 0, BATCH, 100)])


def test_choose_pipeline(images, monkeypatch):
  assert input_pipeline.choose_pipeline("auto", images, device_budget_mb=1) == "device"
  assert input_pipeline.choose_pipeline("auto", images, device_budget_mb=0) == "tfdata"
  assert input_pipeline.choose_pipeline("numpy", images, device_budget_mb=1) == "numpy"
  monkeypatch.setitem(sys.modules, "tensorflow", None)   # `import tensorflow` now fails
  assert input_pipeline.choose_pipeline("auto", images, device_budget_mb=0) == "numpy"
  with pytest.raises(prepare.DataError, match=r"data.pipeline='tfdata' needs tensorflow"):
    input_pipeline.choose_pipeline("tfdata", images, device_budget_mb=0)
  with pytest.raises(ValueError, match="unknown data.pipeline 'gpu'; use one of auto, device"):
    input_pipeline.choose_pipeline("gpu", images, device_budget_mb=0)


def test_bench_reports_every_path(images, capsys, tmp_path):
  np.save(tmp_path / "faces.npy", images)
  assert input_pipeline.main(["--bench", "--path", str(tmp_path / "faces.npy"), "--batch", "16",
                              "--steps", "3"]) == 0
  out = capsys.readouterr().out
  for pipeline in ("tfdata", "numpy", "device"):
    assert f"{pipeline}: " in out and "images/s" in out


def test_training_on_the_device_path_without_tensorflow(tmp_path):
  """Acceptance 3: a process where `import tensorflow` fails trains from device-resident data."""
  np.save(tmp_path / "faces.npy",
          np.random.default_rng(1).integers(0, 256, (48, 16, 16, 3), dtype=np.uint8))
  script = textwrap.dedent(f"""
      import sys
      sys.modules["tensorflow"] = None            # any `import tensorflow` raises ImportError
      sys.modules["tensorflow_datasets"] = None
      from configs import tiny
      from gan_jax import train
      config = tiny.get_config()
      config.data.path = {str(tmp_path / "faces.npy")!r}
      config.data.pipeline = "device"
      config.data.hflip = True
      config.train.batch_size = 16
      config.train.num_steps = 3
      config.log_every = config.sample_every = config.checkpoint_every = 3
      state = train.train_and_evaluate(config, {str(tmp_path / "run")!r})
      assert int(state.step) == 3, state.step
      assert sys.modules["tensorflow"] is None
      from gan_jax.data import pipeline as input_pipeline
      from gan_jax.data import loader as data_loader
      faces = data_loader.training_images(config.data.path, 16)
      assert input_pipeline.choose_pipeline("auto", faces, 0) == "numpy"   # never tf.data
      print("trained", int(state.step), "steps without tensorflow")
      """)
  env = subprocess_env(2)
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "trained 3 steps without tensorflow" in result.stdout
