"""train.ema_batch_stats: the EMA generator samples with batch statistics of its own.

A tiny 16 px G (configs/tiny.py: batch norm before both transposed convs)
whose EMA weights differ from the live ones; no training, so every case is a
few small forward passes.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from gan_jax.training import family
from gan_jax import checkpoint, streams
from gan_jax.config import checks, defaults
from gan_jax.data import pipeline as input_pipeline
from gan_jax.errors import ConfigError
from gan_jax.eval import evaluate
from gan_jax.explore import loader
from gan_jax.training.state import create_state

BATCHES, BATCH_SIZE = 3, 8


def make_config(mode="recompute", **options):
  """configs/tiny.py with EMA, train.ema_batch_stats=`mode`, and `options` (section__option)."""
  return tiny_config({"train.ema_decay": 0.99, "train.ema_batch_stats": mode,
                      "train.ema_stats_batches": BATCHES,
                      "train.ema_stats_batch_size": BATCH_SIZE}, **options)


def with_ema(gan, key=1):
  """G's initial state with EMA weights unlike G's and live statistics unlike the EMA's."""
  state = jax.jit(create_state, static_argnums=0)(gan, jax.random.key(0))
  leaves, tree = jax.tree.flatten(state.g_params)
  keys = jax.random.split(jax.random.key(key), len(leaves))
  ema = [leaf * 1.5 + 0.05 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
  live = jax.tree.map(lambda s: s + 0.3, state.g_batch_stats)
  return state.replace(ema_g_params=jax.tree.unflatten(tree, ema), g_batch_stats=live)


@pytest.fixture(scope="module")
def gan():
  return family.bundle(make_config())


@pytest.fixture(scope="module")
def state(gan):
  return with_ema(gan)


@pytest.fixture(scope="module")
def sample(gan):
  return jax.jit(gan.sample)


@pytest.fixture(scope="module")
def expected(gan, state):
  return expected_statistics(gan, state.ema_g_params)


def expected_statistics(gan, params):
  """Every BN layer's mean/var, averaged over the fixed batches, from G's captured activations.

  In tiny G, bn0 normalises the projection (reshaped to 4x4) and bn1 the
  first transposed conv's output; G runs in training mode, batch by batch.
  """
  latents = jax.random.normal(streams.ema_stats_key(), (BATCHES, BATCH_SIZE, gan.latent_dim))
  generator = gan.generator.clone(axis_name=None)
  moments = {"bn0": [], "bn1": []}
  for z in latents:
    _, captured = generator.apply({"params": params}, z, train=True, capture_intermediates=True,
                                  mutable=["batch_stats", "intermediates"])
    captured = captured["intermediates"]
    inputs = {"bn0": captured["project"]["__call__"][0].reshape(BATCH_SIZE, 4, 4, -1),
              "bn1": captured["up0"]["__call__"][0]}
    for name, x in inputs.items():
      x = np.asarray(x, np.float64)
      moments[name].append((x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))))
  return {name: {"mean": np.mean([m for m, _ in values], axis=0),
                 "var": np.mean([v for _, v in values], axis=0)}
          for name, values in moments.items()}


def test_recomputed_statistics_are_the_ema_generators_batch_moments(gan, state, expected):
  variables = jax.jit(gan.sampling_variables)(state)
  assert jax.tree.structure(variables["batch_stats"]) == jax.tree.structure(state.g_batch_stats)
  for name, stats in expected.items():
    for stat in ("mean", "var"):
      np.testing.assert_allclose(variables["batch_stats"][name][stat], stats[stat], rtol=2e-5,
                                 atol=1e-6, err_msg=f"{name}.{stat}")
      assert not np.allclose(variables["batch_stats"][name][stat],
                             state.g_batch_stats[name][stat])
  jax.tree.map(np.testing.assert_array_equal, variables["params"], state.ema_g_params)


def test_recompute_samples_with_those_statistics_and_differs_from_live(gan, state, sample,
                                                                     expected):
  z = jax.random.normal(jax.random.key(5), (6, gan.latent_dim))
  recomputed = sample(state, z)
  by_hand = gan.generator.apply({"params": state.ema_g_params, "batch_stats": expected}, z,
                                train=False)
  np.testing.assert_allclose(recomputed, by_hand, atol=1e-5)
  live = jax.jit(dataclasses.replace(gan, ema_batch_stats="live").sample)(state, z)
  assert np.abs(np.asarray(recomputed) - np.asarray(live)).max() > 1e-2
  # Deterministic: the same images again, also from a GAN built anew from the config.
  np.testing.assert_array_equal(recomputed, sample(state, z))
  np.testing.assert_array_equal(recomputed, jax.jit(family.bundle(make_config()).sample)(state, z))


def test_live_samples_as_before_the_option(state):
  gan = family.bundle(make_config("live"))
  z = jax.random.normal(jax.random.key(5), (6, gan.latent_dim))
  before = jax.jit(lambda z: gan.generator.apply(
      {"params": state.ema_g_params, "batch_stats": state.g_batch_stats}, z, train=False))
  np.testing.assert_array_equal(jax.jit(gan.sample)(state, z), before(z))


def test_without_ema_or_without_batch_norm_nothing_changes(gan, state):
  z = jax.random.normal(jax.random.key(5), (4, gan.latent_dim))
  live = dataclasses.replace(gan, ema_batch_stats="live")
  no_ema = state.replace(ema_g_params=None)
  np.testing.assert_array_equal(jax.jit(gan.sample)(no_ema, z), jax.jit(live.sample)(no_ema, z))
  assert gan.sampling_variables(no_ema)["params"] is state.g_params

  config = make_config()
  config.model.g_batch_norm = False
  plain = family.bundle(config)
  plain_state = with_ema(plain)
  assert plain_state.g_batch_stats == {}
  plain_live = dataclasses.replace(plain, ema_batch_stats="live")
  np.testing.assert_array_equal(jax.jit(plain.sample)(plain_state, z),
                                jax.jit(plain_live.sample)(plain_state, z))


def test_trained_gan_computes_the_statistics_once_per_state(gan, state):
  fields = {name: getattr(state, name) for name in loader.GENERATOR_FIELDS}
  model = loader.TrainedGAN(make_config(), gan, loader.partial_state(**fields), step=0)
  calls = []
  compute = model._sampling_variables  # pylint: disable=protected-access
  model._sampling_variables = lambda s: calls.append(1) or compute(s)  # pylint: disable=protected-access
  z = np.asarray(jax.random.normal(jax.random.key(6), (20, gan.latent_dim)))
  # First asked for inside a trace (as project's jitted step does): cached as concrete arrays.
  traced = jax.jit(model.sample)(jnp.asarray(z[:8]))
  images = model.generate(z, batch_size=8)  # three batches
  assert len(calls) == 1
  np.testing.assert_allclose(images, jax.jit(gan.sample)(state, jnp.asarray(z)), atol=1e-6)
  np.testing.assert_allclose(traced, images[:8], atol=1e-6)
  # A new state (the periodic FID's next evaluation) gets its own statistics.
  other = with_ema(gan, key=2)
  model.state = loader.partial_state(**{name: getattr(other, name)
                                        for name in loader.GENERATOR_FIELDS})
  np.testing.assert_allclose(model.generate(z[:4], batch_size=8),
                             jax.jit(gan.sample)(other, jnp.asarray(z[:4])), atol=1e-6)
  assert len(calls) == 2


def test_options_defaults_and_checks():
  assert defaults.get_config().train.ema_batch_stats == "live"
  config = make_config(train__ema_stats_batch_size=0)
  assert family.bundle(config).ema_stats_batch_size == config.train.batch_size
  with pytest.raises(ConfigError, match="train.ema_batch_stats"):
    checks.validate_config(make_config("running"))
  with pytest.raises(ConfigError, match="ema_stats_batches"):
    checks.validate_config(make_config(train__ema_stats_batches=0))


def test_evaluate_run_and_loader_take_the_mode_asked_for(gan, state, tmp_path):
  """A saved EMA run (config 'recompute'), read as saved and with --ema_batch_stats=live."""
  data = tmp_path / "faces.npy"
  np.save(data, np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), np.uint8))
  config = make_config()
  config.data.path = str(data)
  workdir = tmp_path / "run"
  manager = checkpoint.make_manager(workdir)
  checkpoint.save(manager, state, input_pipeline.pipeline_state(0, config.seed), config, step=0)
  manager.wait_until_finished()
  manager.close()

  z = jax.random.normal(jax.random.key(7), (4, gan.latent_dim))
  saved, live = loader.load(workdir), loader.load(workdir, ema_batch_stats="live")
  assert "with its own batch statistics" in loader.describe(saved, workdir)
  np.testing.assert_allclose(saved.generate(z, 4), jax.jit(gan.sample)(state, z), atol=1e-6)
  live_gan = dataclasses.replace(gan, ema_batch_stats="live")
  np.testing.assert_allclose(live.generate(z, 4), jax.jit(live_gan.sample)(state, z), atol=1e-6)

  flags = ["run", "--workdir", str(workdir), "--features", "pixels", "--num_samples", "16",
           "--batch", "8", "--kid_subset_size", "8", "--kid_subsets", "2"]
  assert evaluate.main(flags + ["--ema_batch_stats", "live"]) == 0
  assert evaluate.main(flags) == 0
  asked = json.loads((workdir / "eval" / "metrics_step_0_pixels_ema_live.json").read_text())
  own = json.loads((workdir / "eval" / "metrics_step_0_pixels.json").read_text())
  assert (asked["ema_batch_stats"], own["ema_batch_stats"]) == ("live", "recompute")
  assert asked["fid"] != own["fid"]
