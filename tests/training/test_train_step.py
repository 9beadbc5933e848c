"""The train step: purity, no host transfers, and equality across parallel modes."""

import jax
import numpy as np
import pytest

from conftest import tiny_config
from gan_jax.training import family
from gan_jax import parallel
from gan_jax.training.state import create_state
from gan_jax.training.step import make_train_step


def fake_faces(n, resolution=16, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (n, resolution, resolution, 3), np.uint8)


def init_state(gan, seed=0):
  return jax.jit(lambda key: create_state(gan, key))(jax.random.key(seed))


def copy_tree(tree):
  return jax.tree.map(lambda x: x.copy(), tree)


def leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(
      state.replace(key=jax.random.key_data(state.key)))]


@pytest.fixture(scope="module")
def single_device_runner():
  gan = family.bundle(tiny_config())
  runner = parallel.DataParallel(make_train_step(gan), "shard_map",
                                 parallel.make_mesh(jax.devices()[:1]))
  return gan, runner


def test_same_inputs_give_bitwise_identical_outputs(single_device_runner):
  gan, runner = single_device_runner
  state = runner.put_state(init_state(gan))
  batch = runner.put_batch(fake_faces(32))
  key = runner.put_state(jax.random.key(7))
  out1, metrics1 = runner.step(copy_tree(state), batch, key)
  out2, metrics2 = runner.step(copy_tree(state), batch, key)
  for a, b in zip(leaves(out1), leaves(out2)):
    np.testing.assert_array_equal(a, b)
  assert runner.get_metrics(metrics1) == runner.get_metrics(metrics2)
  assert int(out1.step) == 1


def test_different_key_gives_different_fake_batch(single_device_runner):
  gan, runner = single_device_runner
  state = runner.put_state(init_state(gan))
  batch = runner.put_batch(fake_faces(32))
  out1, m1 = runner.step(copy_tree(state), batch, runner.put_state(jax.random.key(1)))
  out2, m2 = runner.step(copy_tree(state), batch, runner.put_state(jax.random.key(2)))
  # The real half of D's input is the same, so any difference comes from the fakes.
  assert runner.get_metrics(m1)["d_fake"] != runner.get_metrics(m2)["d_fake"]
  g1, g2 = jax.tree.leaves(out1.g_params), jax.tree.leaves(out2.g_params)
  assert any(not np.array_equal(a, b) for a, b in zip(g1, g2))


def test_step_makes_no_host_transfer():
  gan = family.bundle(tiny_config())
  runner = parallel.DataParallel(make_train_step(gan), "shard_map")  # all 8 devices
  state = runner.put_state(init_state(gan))
  batch = runner.put_batch(fake_faces(32))
  key = runner.put_state(jax.random.key(0))
  state, _ = runner.step(state, batch, key)  # compile outside the guard
  with jax.transfer_guard("disallow"):
    for _ in range(3):
      state, metrics = runner.step(state, batch, key)
  assert int(state.step) == 4


def test_shard_map_and_pmap_match_one_device():
  """8 devices with synchronised batch norm == 1 device on the same global batch."""
  assert jax.device_count() == 8
  gan = family.bundle(tiny_config())
  step_fn = make_train_step(gan)
  runners = {
      "one": parallel.DataParallel(step_fn, "shard_map", parallel.make_mesh(jax.devices()[:1])),
      "shard_map": parallel.DataParallel(step_fn, "shard_map"),
      "pmap": parallel.DataParallel(step_fn, "pmap"),
  }
  batches = [fake_faces(16, seed=i) for i in range(3)]
  results = {}
  for name, runner in runners.items():
    state = runner.put_state(init_state(gan))
    key = runner.put_state(jax.random.key(3)) if runner.mode == "shard_map" else jax.random.key(3)
    for batch in batches:
      state, metrics = runner.step(state, runner.put_batch(batch), key)
    results[name] = (leaves(runner.get_state(state)), runner.get_metrics(metrics))
  one_state, one_metrics = results["one"]
  for name in ("shard_map", "pmap"):
    state, metrics = results[name]
    for a, b in zip(one_state, state):
      np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    for metric, value in metrics.items():
      assert abs(value - one_metrics[metric]) < 1e-5, (name, metric)
