"""Training techniques inside the train step: balancing, EMA, non-finite guards,
schedules, several D/G steps, regularisers, config checks, and real learning.

All runs use the tiny 16 px models on a 1-device mesh. Compiling dominates the
cost on a CPU, so runners and initial states are shared between tests.
"""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_ROOT, pixel_frechet, tiny_config
from gan_jax.training import family
from gan_jax import parallel
from gan_jax.config import checks as config_checks
from gan_jax.data import pipeline as input_pipeline
from gan_jax.training import optim
from gan_jax.training import step as train_step
from gan_jax.training import updates
from gan_jax.training.state import create_state
from gan_jax.training.step import make_train_step
from gan_jax.training.techniques.instance_noise import InstanceNoise

# The learning runs get a few hundred steps: a larger learning rate than the
# DCGAN default gets there (measured in the learning test below).
FAST = {"optim.g_lr": 2e-3, "optim.d_lr": 2e-3}
# The saturating minimax loss needs a slower D (TTUR), or G's gradient vanishes.
MINIMAX = {"loss.name": "minimax", "optim.d_lr": 5e-4}
# WGAN-GP wants no batch norm in D, its paper's Adam betas and a critic ahead
# of G (TTUR and 2 D steps per G step).
WGAN_GP = {"loss.name": "wgan-gp", "model.d_batch_norm": False, "optim.b1": 0.0,
           "optim.b2": 0.9, "optim.g_lr": 1e-3, "optim.d_lr": 2e-3, "train.d_steps": 2}
EMA_AUGMENT_BF16 = {"train.ema_decay": 0.99, "train.ema_rampup": True,
                    "augment.policy": "color,translation,cutout", "train.dtype": "bfloat16"}


def make_config(overrides=()):
  """configs/tiny.py with FAST and then `overrides` ({"section.option": value})."""
  return tiny_config({**FAST, **dict(overrides)})


@functools.lru_cache(maxsize=None)
def _runner(overrides):
  config = make_config(overrides)
  gan = family.bundle(config)
  return config, gan, parallel.DataParallel(make_train_step(gan), "shard_map",
                                            parallel.make_mesh(jax.devices()[:1]))


def runner_for(overrides=()):
  """(config, gan, runner) for tiny + overrides; compiled once per distinct config."""
  return _runner(tuple(sorted(dict(overrides).items())))


@functools.lru_cache(maxsize=None)
def _initial_state(d_batch_norm: bool, spectral_norm: bool, ema: bool):
  gan = family.bundle(make_config({"model.d_batch_norm": d_batch_norm,
                                     "model.d_spectral_norm": spectral_norm,
                                     "train.ema_decay": 0.5 if ema else 0.0}))
  # An "rbg" key: XLA:CPU compiles the initialisers' random numbers several
  # times faster than with threefry keys, and which generator drew the
  # initial weights does not matter here. The step's own key stays threefry.
  return jax.jit(lambda key: create_state(gan, key))(jax.random.key(0, impl="rbg"))


def initial_state(overrides=()):
  """A fresh copy of the initial state of tiny + FAST + overrides.

  Configs with the same D layout and EMA on/off share it (the optimiser state
  holds only the learning rate, which every step sets from the config).
  """
  config = make_config(overrides)
  state = _initial_state(config.model.d_batch_norm, config.model.d_spectral_norm,
                         bool(config.train.ema_decay))
  return jax.tree.map(lambda x: x.copy(), state)


def fake_faces(n=32, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (n, 16, 16, 3), np.uint8)


def host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(host(a)), jax.tree.leaves(host(b))):
    np.testing.assert_array_equal(x, y)


def trees_differ(a, b):
  return any(not np.array_equal(x, y)
             for x, y in zip(jax.tree.leaves(host(a)), jax.tree.leaves(host(b))))


def run_steps(overrides, batches, key=0):
  """Run the step from the initial state on each batch.

  Returns the final state, the host metrics of each step and the host state after each.
  """
  _, _, runner = runner_for(overrides)
  state = runner.put_state(initial_state(overrides))
  key = runner.put_state(jax.random.key(key))
  metrics, states = [], []
  for batch in batches:
    state, step_metrics = runner.step(state, runner.put_batch(batch), key)
    metrics.append(runner.get_metrics(step_metrics))
    states.append(host(state.replace(key=jax.random.key_data(state.key))))
  return state, metrics, states


# --- balanced training (seed 004) ---

@pytest.mark.parametrize("d_loss, g_loss, expected", [
    (2.0, 0.5, (True, False)),   # D is losing: only D trains
    (0.5, 2.0, (False, True)),   # G is losing: only G trains
    (1.0, 1.0, (True, True)),    # tie: both
    (1.0, 1.2, (True, True)),    # closer than the margin: both
])
def test_balance_rule_picks_the_weaker_network(d_loss, g_loss, expected):
  gan = family.bundle(make_config({"train.balance_margin": 0.5}))
  train_d, train_g = train_step.choose_updates(gan, jnp.float32(d_loss), jnp.float32(g_loss))
  assert (bool(train_d), bool(train_g)) == expected


def test_balance_off_trains_both():
  gan = family.bundle(make_config())
  assert not gan.techniques
  assert tuple(map(bool, train_step.choose_updates(gan, jnp.float32(9.0), jnp.float32(0.0)))) \
      == (True, True)


def test_balanced_step_updates_only_the_weaker_network():
  # At initialisation D outputs ~0: L_D = 2 log 2 > L_G = log 2, so only D trains.
  overrides = {"train.balance_margin": 0.1}
  before = initial_state(overrides)
  state, metrics, _ = run_steps(overrides, [fake_faces()])
  assert metrics[0]["d_updates"] == 1.0 and metrics[0]["g_updates"] == 0.0
  assert metrics[0]["d_loss"] - 0.1 > np.log(2)  # D's loss is the higher one
  assert_trees_equal(state.g_params, before.g_params)          # G untouched...
  assert_trees_equal(state.g_opt_state, before.g_opt_state)
  assert_trees_equal(state.g_batch_stats, before.g_batch_stats)
  assert trees_differ(state.d_params, before.d_params)          # ...D trained


# --- EMA of G ---

def test_ema_matches_closed_form_after_k_steps():
  # The EMA of the learning test's config: decay_t = min(0.99, (1 + t) / (10 + t)).
  overrides, k = {**LEARNING_CASES["ns"], **EMA_AUGMENT_BF16}, 3
  start = initial_state(overrides)
  for a, b in zip(jax.tree.leaves(start.ema_g_params), jax.tree.leaves(start.g_params)):
    np.testing.assert_array_equal(a, b)          # the EMA starts at G's initial weights
  state, _, states = run_steps(overrides, [fake_faces(seed=i) for i in range(k)])
  # With p_t the params after t steps (p_0 initial):
  # ema_k = (prod_t d_t) p_0 + sum_t (1 - d_t) (prod_{s > t} d_s) p_{t+1}.
  decays = [min(0.99, (1 + t) / (10 + t)) for t in range(k)]
  params = [host(start.g_params)] + [s.g_params for s in states]
  expected = jax.tree.map(lambda *p: np.prod(decays) * p[0] + sum(
      (1 - decays[t]) * np.prod(decays[t + 1:]) * p[t + 1] for t in range(k)), *params)
  for a, b in zip(jax.tree.leaves(host(state.ema_g_params)), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert trees_differ(state.ema_g_params, state.g_params)


def test_ema_rampup_and_sampling_prefers_ema():
  gan = family.bundle(make_config({"train.ema_decay": 0.999, "train.ema_rampup": True}))
  np.testing.assert_allclose(train_step.ema_decay_at(gan, jnp.int32(0)), 0.1)
  np.testing.assert_allclose(train_step.ema_decay_at(gan, jnp.int32(90)), 91 / 100)
  np.testing.assert_allclose(train_step.ema_decay_at(gan, jnp.int32(10**6)), 0.999)
  state = initial_state({"train.ema_decay": 0.999})
  state = state.replace(ema_g_params=jax.tree.map(jnp.zeros_like, state.g_params))
  z = jax.random.normal(jax.random.key(0), (2, gan.latent_dim))
  # All-zero weights give tanh(0) = 0 images: the sample came from the EMA.
  np.testing.assert_array_equal(gan.sample(state, z), 0.0)


def test_ema_off_keeps_no_copy():
  assert initial_state().ema_g_params is None


# --- non-finite gradients ---

def test_guarded_update_skips_non_finite_gradients():
  params = {"w": jnp.ones(3)}
  optimizer = optim.adam(0.1, 0.5, 0.999)
  net = updates.NetState(params, optimizer.init(params), {})
  bad = {"w": jnp.array([1.0, jnp.nan, 0.0])}
  kept, applied, skipped = updates.guarded_update(optimizer, None, jnp.int32(0),
                                                  jnp.array(True), bad, net, {})
  assert_trees_equal(kept, net)
  assert (float(applied), float(skipped)) == (0.0, 1.0)
  good = {"w": jnp.ones(3)}
  moved, applied, skipped = updates.guarded_update(optimizer, None, jnp.int32(0),
                                                   jnp.array(True), good, net, {})
  assert trees_differ(moved.params, net.params)
  assert (float(applied), float(skipped)) == (1.0, 0.0)


def test_nan_batch_skips_d_update_and_counts_it():
  # A NaN pixel makes D's gradients NaN; G's gradients (fakes only) stay finite.
  batch = (fake_faces().astype(np.float32) / 127.5 - 1.0)
  batch[0, 0, 0, 0] = np.nan
  before = initial_state()
  state, metrics, _ = run_steps((), [batch, batch])
  for step_metrics in metrics:
    assert step_metrics["d_skipped"] == 1.0 and step_metrics["d_updates"] == 0.0
    assert step_metrics["g_skipped"] == 0.0 and step_metrics["g_updates"] == 1.0
  assert_trees_equal(state.d_params, before.d_params)
  assert_trees_equal(state.d_opt_state, before.d_opt_state)
  assert trees_differ(state.g_params, before.g_params)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(host(state.g_params)))


# --- learning-rate schedules ---

def test_schedules():
  linear = optim.learning_rate_schedule(1.0, "linear", num_steps=10)
  np.testing.assert_allclose([linear(0), linear(5), linear(10)], [1.0, 0.5, 0.0], atol=1e-6)
  cosine = optim.learning_rate_schedule(1.0, "cosine", num_steps=10)
  np.testing.assert_allclose([cosine(0), cosine(5), cosine(10)], [1.0, 0.5, 0.0], atol=1e-6)
  warm = optim.learning_rate_schedule(1.0, "constant", num_steps=10, warmup_steps=4)
  np.testing.assert_allclose([warm(0), warm(2), warm(4), warm(9)], [0.0, 0.5, 1.0, 1.0], atol=1e-6)
  warm_linear = optim.learning_rate_schedule(1.0, "linear", num_steps=10, warmup_steps=4)
  np.testing.assert_allclose([warm_linear(4), warm_linear(7), warm_linear(10)], [1.0, 0.5, 0.0],
                             atol=1e-6)


# --- several D/G steps, schedules and regularisers in one step ---

# Several D steps run in the wgan-gp learning cases below.
KITCHEN_SINK = {
    "loss.name": "lsgan", "loss.real_label": 0.9, "loss.flip_prob": 0.2,
    "loss.r1_gamma": 10.0, "loss.r1_every": 2, "model.d_batch_norm": False,
    "train.g_steps": 2, "train.instance_noise": 0.5,
    "train.num_steps": 10, "optim.schedule": "linear", "optim.warmup_steps": 2,
    "model.d_spectral_norm": True, "model.d_dropout": 0.3,
}


def test_techniques_together_step_by_the_rules():
  batches = [fake_faces(seed=i) for i in range(2)]
  before = initial_state(KITCHEN_SINK)
  state, metrics, states = run_steps(KITCHEN_SINK, batches)
  config, gan, _ = runner_for(KITCHEN_SINK)
  for step, step_metrics in enumerate(metrics):
    assert all(np.isfinite(v) for v in step_metrics.values()), step_metrics
    assert (step_metrics["d_updates"], step_metrics["g_updates"]) == (1.0, 2.0)
    # Lazy R1 on even steps only.
    assert (step_metrics["d_penalty"] > 0) == (step % 2 == 0), (step, step_metrics)
    # The learning rate follows the iteration: warm-up from 0, then linear decay.
    for opt_state, base_lr in ((states[step].d_opt_state, config.optim.d_lr),
                               (states[step].g_opt_state, config.optim.g_lr)):
      expected = optim.learning_rate_schedule(base_lr, "linear", 10, 2)(step)
      np.testing.assert_allclose(opt_state.hyperparams["learning_rate"], expected, rtol=1e-6)
  # Spectral norm's power-iteration vectors live in d_batch_stats and move.
  assert jax.tree.leaves(before.d_batch_stats)
  assert trees_differ(state.d_batch_stats, before.d_batch_stats)
  # Dropout, label flips and noise are seeded: same key, same run.
  again, _, _ = run_steps(KITCHEN_SINK, batches)
  assert_trees_equal(again.d_params, state.d_params)
  other, _, _ = run_steps(KITCHEN_SINK, batches, key=1)
  assert trees_differ(other.d_params, state.d_params)
  noise, = (t for t in gan.techniques if isinstance(t, InstanceNoise))
  assert noise.steps == 10  # 0 means "anneal over train.num_steps"


def test_instance_noise_anneals_linearly_to_zero():
  gan = family.bundle(make_config({"train.instance_noise": 0.2,
                                     "train.instance_noise_steps": 100}))
  noise, = gan.techniques
  stds = [float(noise.std_at(jnp.int32(s))) for s in (0, 50, 100, 200)]
  np.testing.assert_allclose(stds, [0.2, 0.1, 0.0, 0.0], atol=1e-7)


# --- config checks ---

@pytest.mark.parametrize("overrides, message", [
    ({"loss.name": "wgan-gp", "model.d_batch_norm": True}, "d_batch_norm=False"),
    ({"loss.r1_gamma": 1.0, "model.d_batch_norm": True}, "d_batch_norm=False"),
    ({"loss.name": "hinge", "loss.real_label": 0.9}, "loss.real_label=1.0"),
    ({"loss.name": "wgan-gp", "loss.flip_prob": 0.1}, "loss.flip_prob=0.0"),
    ({"loss.name": "bce"}, "wgan-gp"),
    ({"augment.policy": "color,flip"}, "translation"),
    ({"optim.schedule": "step"}, "cosine"),
    ({"train.dtype": "float16"}, "bfloat16"),
    ({"train.ema_decay": 1.0}, "train.ema_decay"),
    ({"loss.flip_prob": 0.7}, "loss.flip_prob"),
    ({"train.d_steps": 0}, "train.d_steps"),
    ({"model.conv_impl": "cudnn"}, "model.conv_impl='cudnn' is not one of auto, im2col, im2col_rgb"),
    ({"train.conv_dtype": "float16"},
     "unknown train.conv_dtype 'float16'; use one of auto, float32, bfloat16"),
    ({"model.name": "stylegan"}, "unknown model.name 'stylegan'; available: dcgan"),
    ({"data.resolution": 50}, r"data.resolution=50 is not 4 or 9 times a power of two"),
    ({"data.resolution": 36, "model.d_final_size": 4},
     r"model.d_final_size=4 is not reachable by halving data.resolution=36; use one of its "
     r"halvings, e.g. 9"),
    ({"model.d_final_size": 3},
     r"model.d_final_size=3 is not reachable by halving data.resolution=16; use one of its "
     r"halvings, e.g. 4"),
])
def test_incompatible_or_invalid_config_fails_with_the_fix(overrides, message):
  with pytest.raises(config_checks.ConfigError, match=message):
    config_checks.validate_config(make_config(overrides))


@pytest.mark.parametrize("cadence", ["log_every", "sample_every", "checkpoint_every"])
def test_cadence_below_one_is_refused(cadence):
  config = make_config()
  config[cadence] = 0
  with pytest.raises(config_checks.ConfigError, match=f"{cadence}=0 must be >= 1"):
    config_checks.validate_config(config)


def test_cli_rejects_wgan_gp_with_batch_norm(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "gan_jax.main", "--config", "configs/celeba64.py",
       "--config.loss.name=wgan-gp", "--config.model.d_batch_norm=True",
       "--config.data.path=/nonexistent", f"--workdir={tmp_path}"],
      capture_output=True, text=True, cwd=REPO_ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"},
      timeout=300)
  assert result.returncode != 0
  assert "d_batch_norm=False" in result.stderr
  assert "Traceback" not in result.stderr


# --- learning real faces ---

# Every loss learns once; EMA + DiffAugment + bfloat16 ride along with three of them
# (both critic losses among them), so each technique learns with more than one loss.
LEARNING_CASES = {
    f"{name}{'-ema-augment-bf16' if combo else ''}": {
        **({"ns": {}, "minimax": MINIMAX, "wgan-gp": WGAN_GP}.get(name, {"loss.name": name})),
        **(EMA_AUGMENT_BF16 if combo else {})}
    for name, combo in (("ns", False), ("minimax", True), ("lsgan", False), ("hinge", True),
                        ("wgan-gp", True))
}
# float32 activations, bfloat16 convolution operands (the fast CPU mode).
LEARNING_CASES["ns-conv-bf16"] = {"train.conv_dtype": "bfloat16"}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(LEARNING_CASES))
def test_every_loss_learns_real_faces(case, faces16):
  """300 steps at batch 32 at least halve the pixel Fréchet distance to 512 real faces."""
  overrides = LEARNING_CASES[case]
  _, gan, runner = runner_for(overrides)
  real = faces16[-512:]
  state = runner.put_state(initial_state(overrides))
  key = runner.put_state(jax.random.key(1))
  start = pixel_frechet(gan, runner.get_state(state), real)
  batches = input_pipeline.numpy_batches(faces16[:-512], 32, seed=0)
  for _ in range(300):
    state, metrics = runner.step(state, runner.put_batch(next(batches)), key)
  end = pixel_frechet(gan, runner.get_state(state), real)
  print(f"{case}: pixel Fréchet distance {start:.2f} -> {end:.2f} ({end / start:.2f}x)")
  last_metrics = runner.get_metrics(metrics)
  assert np.isfinite(list(last_metrics.values())).all()
  assert last_metrics["d_updates"] == overrides.get("train.d_steps", 1)
  if "bf16" in case:
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.g_params))
  assert end <= 0.5 * start, f"{case}: {start:.2f} -> {end:.2f}"
