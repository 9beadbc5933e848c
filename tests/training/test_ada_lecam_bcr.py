"""ADA, LeCam and bCR (training/techniques): the pure functions on known inputs, their wiring into the step,
exact resume through a checkpoint, and 8 devices == 1 device with all three on.

The step runs use the tiny models at 16 px on batches of 8 random images; one
config (ADA + LeCam + bCR) serves every step test, so it compiles once per
device count.
"""

import functools
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import tiny_config
from gan_jax import checkpoint, parallel
from gan_jax.config import checks, resume
from gan_jax.errors import ConfigError
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training import augment, family, losses
from gan_jax.training import step as train_step
from gan_jax.training.techniques import ada as ada_lib
from gan_jax.training.techniques import bcr as bcr_lib
from gan_jax.training.techniques import lecam as lecam_lib
from gan_jax.training.state import create_state

# All three on; ADA adjusts every 2 steps by 8 * 2 / 160 = 0.1.
REGULARISED = {"augment.policy": "color,translation,cutout", "augment.ada_target": 0.6,
               "augment.ada_interval": 2, "augment.ada_kimg": 0.16, "loss.lecam_weight": 0.3,
               "loss.bcr_real": 1.0, "loss.bcr_fake": 1.0}


def make_config(overrides=()):
  """configs/tiny.py at batch 8 with learning rates 2e-3, then `overrides`."""
  return tiny_config({"train.batch_size": 8, "optim.g_lr": 2e-3, "optim.d_lr": 2e-3,
                      **dict(overrides)})


def random_faces(n=8, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (n, 16, 16, 3), np.uint8)


def host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


@functools.lru_cache(maxsize=None)
def runner_on(num_devices: int):
  """(config, gan, runner) of REGULARISED on the first `num_devices` devices."""
  config = make_config(REGULARISED)
  gan = family.bundle(config)
  mesh = parallel.make_mesh(jax.devices()[:num_devices])
  return config, gan, parallel.DataParallel(train_step.make_train_step(gan), "shard_map", mesh)


@functools.lru_cache(maxsize=None)
def _initial_state():
  _, gan, _ = runner_on(1)
  return jax.jit(lambda key: create_state(gan, key))(jax.random.key(0))


def initial_state(ada_p=0.0):
  state = jax.tree.map(lambda x: x.copy(), _initial_state())
  return state.replace(techniques={**state.techniques,
                                   "ada": {"p": jnp.float32(ada_p), "sign_sum": jnp.float32(0)}})


def run(runner, state, batches, key=0):
  """(state, host metrics of each step) after one step per batch."""
  state, key, metrics = runner.put_state(state), runner.put_state(jax.random.key(key)), []
  for batch in batches:
    state, step_metrics = runner.step(state, runner.put_batch(batch), key)
    metrics.append(runner.get_metrics(step_metrics))
  return state, metrics


# --- the pure functions ---

def test_ada_moves_p_up_when_d_is_too_sure_and_down_otherwise():
  ada = ada_lib.initial_ada()
  update = functools.partial(ada_lib.ada_update, target=0.6, interval=4, adjustment=0.1)
  for step in range(3):  # signs of 0.9 > 0.6: no change until the 4th step ...
    ada = update(ada, jnp.float32(0.9), jnp.int32(step))
    assert float(ada["p"]) == 0.0
  np.testing.assert_allclose(float(ada["sign_sum"]), 2.7, rtol=1e-6)
  ada = update(ada, jnp.float32(0.9), jnp.int32(3))  # ... then r = 0.9: up by 0.1
  np.testing.assert_allclose(float(ada["p"]), 0.1, rtol=1e-6)
  assert float(ada["sign_sum"]) == 0.0
  for step in range(4, 8):  # r = 0.2 < 0.6: down by 0.1
    ada = update(ada, jnp.float32(0.2), jnp.int32(step))
  np.testing.assert_allclose(float(ada["p"]), 0.0, atol=1e-7)
  for step in range(8, 12):  # and not below 0
    ada = update(ada, jnp.float32(-1.0), jnp.int32(step))
  assert float(ada["p"]) == 0.0
  high = {"p": jnp.float32(0.95), "sign_sum": jnp.float32(0.0)}
  capped = ada_lib.ada_update(high, jnp.float32(1.0), jnp.int32(0), 0.6, 1, 0.1)
  assert float(capped["p"]) == 1.0
  # The paper's speed: p can cross [0, 1] in `kimg` thousand images.
  assert ada_lib.ada_adjustment(64, 4, 500) == 64 * 4 / 500_000


def test_ada_gate_applies_each_group_to_each_image_with_probability_p():
  x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 3), minval=-1.0, maxval=1.0)
  policy = ("color", "translation")
  width = augment.num_uniforms(policy, gated=True)
  assert width == augment.num_uniforms(policy) + 2 == 3 + 2 + 2
  u = np.array(jax.random.uniform(jax.random.key(1), (4, width)))
  u[:, -2:] = [[0.1, 0.1], [0.1, 0.9], [0.9, 0.1], [0.9, 0.9]]  # gates: color, translation
  out = augment.apply(x, jnp.asarray(u), policy, p=jnp.float32(0.5))
  color = augment.apply(x, jnp.asarray(u[:, :3]), ("color",))
  both = augment.apply(x, jnp.asarray(u[:, :5]), policy)
  np.testing.assert_array_equal(out[0], both[0])
  np.testing.assert_array_equal(out[1], color[1])
  translated = augment.translation(x, jnp.asarray(u[:, 3:5]))
  np.testing.assert_array_equal(out[2], translated[2])
  np.testing.assert_array_equal(out[3], x[3])
  np.testing.assert_array_equal(augment.apply(x, jnp.asarray(u), policy, p=jnp.float32(0.0)), x)
  np.testing.assert_array_equal(augment.apply(x, jnp.asarray(u), policy, p=jnp.float32(1.0)), both)


def test_without_ada_the_draws_are_the_ones_before_it():
  """augment() without p draws (N, parameters) uniforms from the key, as before ADA."""
  x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 3), minval=-1.0, maxval=1.0)
  policy = "color,translation,cutout"
  u = jax.random.uniform(jax.random.key(5), (4, 3 + 2 + 2))
  np.testing.assert_array_equal(augment.augment(x, jax.random.key(5), policy),
                                augment.apply(x, u, policy))
  config = make_config({"augment.policy": policy})
  gan = family.bundle(config)
  assert [technique.name for technique in gan.techniques] == ["diffaugment"]
  state = jax.eval_shape(lambda key: create_state(gan, key), jax.random.key(0))
  assert state.techniques == {}
  assert not {"ada", "lecam"} & set(checkpoint.state_to_tree_abstract(state))


def over_two_devices(fn, *args):
  """`fn` under a mapped axis of 2 "devices", each with its row of each argument."""
  return jax.vmap(fn, axis_name=BATCH_AXIS)(*args)


def test_lecam_on_known_inputs():
  real, fake = jnp.array([1.0, 3.0]), jnp.array([-1.0, 0.0])
  averages = {"real": jnp.float32(2.0), "fake": jnp.float32(-1.0)}
  # mean((1 + 1)^2, (3 + 1)^2) + mean((-1 - 2)^2, (0 - 2)^2) = 10 + 6.5
  assert float(lecam_lib.lecam_penalty(real, fake, averages)) == 16.5
  # The averages take D's mean logit over the whole batch: real 4, fake -2 over two devices.
  reals, fakes = jnp.array([[1.0, 3.0], [5.0, 7.0]]), jnp.array([[-1.0, -3.0], [-2.0, -2.0]])
  start = {"real": jnp.float32(1.0), "fake": jnp.float32(0.0)}
  moved = over_two_devices(lambda r, f: lecam_lib.lecam_update(start, r, f, 0.9), reals, fakes)
  np.testing.assert_allclose(moved["real"], [0.9 + 0.4] * 2, rtol=1e-6)
  np.testing.assert_allclose(moved["fake"], [-0.2] * 2, rtol=1e-6)


def test_consistency_and_mean_sign_on_known_inputs():
  penalty = bcr_lib.consistency_penalty(jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0]))
  assert float(penalty) == 2.5  # mean(1, 4)
  signs = over_two_devices(ada_lib.mean_sign, jnp.array([[3.0, -1.0], [2.0, 5.0]]))
  np.testing.assert_array_equal(signs, [0.5, 0.5])


def test_ada_measures_d_by_its_loss_boundary():
  # Least squares calls an output real above 0.5, the BCE losses and hinge above 0.
  assert {name: losses.get_loss(name).boundary for name in losses.LOSSES} == {
      "ns": 0.0, "minimax": 0.0, "lsgan": 0.5, "hinge": 0.0, "wgan-gp": None}
  signs = over_two_devices(lambda x: ada_lib.mean_sign(x, 0.5),
                           jnp.array([[0.3, 0.7], [0.6, 0.9]]))
  np.testing.assert_array_equal(signs, [0.5, 0.5])  # (-1 + 1 + 1 + 1) / 4
  # In the step: D outputs 0.3 on every real, and ADA adjusts p = 0.5 at every step.
  options = {"augment.policy": "color", "augment.ada_target": 0.6, "augment.ada_interval": 1}
  ada = {"p": jnp.full((2,), 0.5), "sign_sum": jnp.zeros((2,))}
  for loss, up in (("ns", True), ("lsgan", False)):  # 0.3 is real by 0, fake by 0.5
    gan = family.bundle(make_config({**options, "loss.name": loss}))

    def moved(real_logits, ada, gan=gan):
      aux = types.SimpleNamespace(real_logits=real_logits, fake_logits=real_logits)
      return train_step.technique_states(gan, {"ada": ada}, aux, jnp.int32(0))["ada"]["p"]

    p = over_two_devices(moved, jnp.full((2, 4), 0.3), ada)
    assert (float(p[0]) > 0.5) == up, (loss, p)


def test_global_rows_do_not_depend_on_the_device_count():
  key = jax.random.key(3)
  one = over_two_devices(lambda _: augment.global_uniforms(key, 4, 3), jnp.zeros((1,)))
  two = over_two_devices(lambda _: augment.global_uniforms(key, 2, 3), jnp.zeros((2,)))
  np.testing.assert_array_equal(one.reshape(4, 3), two.reshape(4, 3))


# --- in D's loss ---

def test_d_loss_adds_lecam_and_bcr_as_weighted():
  config = make_config({"loss.lecam_weight": 0.5, "loss.bcr_real": 2.0, "loss.bcr_fake": 3.0})
  gan = family.bundle(config)
  state = create_state(gan, jax.random.key(0))
  lecam = {"real": jnp.float32(0.25), "fake": jnp.float32(-0.5)}
  shared_key = jax.random.key(4)
  real = jnp.asarray(random_faces(), jnp.float32) / 127.5 - 1.0
  fake = jax.random.uniform(jax.random.key(6), real.shape, minval=-1.0, maxval=1.0)
  loss_key, step = jax.random.key(7), jnp.int32(0)

  def parts(real, fake):
    value, aux = train_step.d_loss(gan, state.d_params, state.d_batch_stats, real, fake,
                                   loss_key, step, shared_key, {"lecam": lecam})
    # D on T(x) as bCR draws it: the shared key's 3rd and 4th splits, dropout as D(x)'s.
    t_real, t_fake = jax.random.split(shared_key, 4)[2:]
    dropout = jax.random.split(loss_key, 6)[2:4]
    d_t = []
    for images, key, drop in ((real, t_real, dropout[0]), (fake, t_fake, dropout[1])):
      augmented = augment.augment_rows(images, key, ("translation",))
      d_t.append(train_step.discriminate(gan, state.d_params, aux.batch_stats, augmented, drop)[0])
    return value, aux, d_t

  value, aux, (d_t_real, d_t_fake) = over_two_devices(parts, real[None], fake[None])
  real_logits, fake_logits = aux.real_logits[0], aux.fake_logits[0]
  expected = (0.5 * lecam_lib.lecam_penalty(real_logits, fake_logits, lecam)
              + 2.0 * bcr_lib.consistency_penalty(real_logits, d_t_real[0])
              + 3.0 * bcr_lib.consistency_penalty(fake_logits, d_t_fake[0]))
  assert float(expected) > 0
  np.testing.assert_allclose(aux.penalty[0], expected, rtol=1e-5)
  np.testing.assert_allclose(value[0], aux.loss[0] + expected, rtol=1e-5)


# --- in the step ---

def test_ada_p_rises_while_d_memorises_eight_images():
  _, _, runner = runner_on(1)
  batch = random_faces()  # the whole data set: D soon tells it from G's images
  state, metrics = run(runner, initial_state(), [batch] * 12)
  p = [m["ada_p"] for m in metrics]
  assert float(host(state.techniques["ada"])["p"]) == p[-1] > 0.0, p
  assert p[0] == 0.0 and all(a == b for a, b in zip(p[1::2], p[2::2])), p  # every 2nd step
  assert all(np.isfinite(m["d_penalty"]) and m["d_penalty"] > 0 for m in metrics)
  assert float(host(state.techniques["lecam"])["real"]) != 0.0


def test_stop_and_resume_through_a_checkpoint_is_exact(tmp_path):
  config, gan, runner = runner_on(1)
  batches = [random_faces(seed=i) for i in range(5)]
  uninterrupted, _ = run(runner, initial_state(ada_p=0.3), batches)
  # Stop after 3 steps, mid-interval: the sign sum must travel with the state.
  stopped, _ = run(runner, initial_state(ada_p=0.3), batches[:3])
  manager = checkpoint.make_manager(tmp_path)
  checkpoint.save(manager, stopped, {"step": 3}, config)
  manager.wait_until_finished()
  assert float(host(stopped.techniques["ada"])["sign_sum"]) != 0.0
  abstract = checkpoint.abstract_state(gan, config, runner.state_sharding)
  restored, _ = checkpoint.restore(checkpoint.make_manager(tmp_path, read_only=True), abstract,
                                   config=config)
  assert checkpoint.fingerprint(restored) == checkpoint.fingerprint(stopped)
  resumed, _ = run(runner, restored, batches[3:])
  assert checkpoint.fingerprint(resumed) == checkpoint.fingerprint(uninterrupted)
  assert set(checkpoint.state_to_tree(resumed)) >= {"ada", "lecam"}


def test_eight_devices_match_one_with_ada_lecam_and_bcr():
  assert jax.device_count() == 8
  batches = [random_faces(seed=i) for i in range(3)]
  results = {}
  for devices in (1, 8):
    _, _, runner = runner_on(devices)
    state, metrics = run(runner, initial_state(ada_p=0.5), batches)  # augmenting from step 0
    results[devices] = host(runner.get_state(state).replace(key=None)), metrics[-1]
  (one, one_metrics), (eight, eight_metrics) = results[1], results[8]
  for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
  assert one_metrics.keys() == eight_metrics.keys()
  for name, value in one_metrics.items():
    assert abs(value - eight_metrics[name]) < 1e-5, name
  # The controller moved p after step 2 (r, a multiple of 1/8, is never the target 0.6).
  assert round(one_metrics["ada_p"], 5) in (0.4, 0.6)


# --- options ---

@pytest.mark.parametrize("overrides, message", [
    ({"augment.ada_target": 0.6}, "augment.policy"),
    ({"augment.ada_target": 1.0, "augment.policy": "color"}, "augment.ada_target"),
    ({"augment.ada_kimg": 0.0}, "augment.ada_kimg"),
    ({"loss.lecam_decay": 1.0}, "loss.lecam_decay"),
    ({"loss.bcr_real": 1.0, "loss.bcr_augment": ""}, "loss.bcr_augment"),
    ({"loss.bcr_augment": "rotate"}, "translation"),
    ({"augment.ada_target": 0.6, "augment.policy": "color", "loss.name": "wgan-gp",
      "model.d_batch_norm": False}, "set --config.augment.ada_target=0"),
])
def test_bad_options_stop_with_one_line(overrides, message):
  with pytest.raises(ConfigError, match=message) as error:
    checks.validate_config(make_config(overrides))
  assert "\n" not in str(error.value)


def test_runs_saved_before_the_options_take_them_off():
  saved = make_config().to_dict()
  for section, name in (("augment", "ada_target"), ("augment", "ada_interval"),
                        ("augment", "ada_kimg"), ("loss", "lecam_weight"),
                        ("loss", "lecam_decay"), ("loss", "bcr_real"), ("loss", "bcr_fake"),
                        ("loss", "bcr_augment")):
    del saved[section][name]
  filled = resume.with_defaults(saved)
  gan = family.bundle(ml_collections.ConfigDict(filled))
  assert gan.techniques == () and filled["loss"]["bcr_augment"] == "translation"
