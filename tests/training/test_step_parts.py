"""The train step's parts, each alone: D's view, the losses and penalties, the
pull-back of G's gradients, the guarded update, EMA and the latents.

Tiny models at 8 px (configs/tiny.py). The parts that run batch norm or pmean
need the step's mapped axis: they run under a 1-device shard_map, compiled once
per GAN in module-level fixtures.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from conftest import tiny_config
from gan_jax import parallel
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training import augment, family, losses, optim, step, updates
from gan_jax.training.state import create_state
from gan_jax.training.techniques import DRound
from gan_jax.training.techniques import labels


def tiny_gan(**overrides):
  """configs/tiny.py at 8 px with `overrides` (section__option=value), bundled."""
  return family.bundle(tiny_config(data__resolution=8, **overrides))


def mapped(fn, devices=1, out_specs=P()):
  """`fn` jitted under the step's mapped axis on a mesh of `devices` CPU devices."""
  mesh = parallel.make_mesh(jax.devices()[:devices])
  return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=P(), out_specs=out_specs,
                               check_vma=False))


def images(n=8, seed=0, resolution=8):
  return jax.random.uniform(jax.random.key(seed), (n, resolution, resolution, 3), jnp.float32,
                            -1.0, 1.0)


@functools.lru_cache(maxsize=None)
def initial_state(gan):
  return jax.jit(lambda key: create_state(gan, key))(jax.random.key(0, impl="rbg"))


@pytest.fixture(scope="module")
def plain():
  """A DCGAN with batch norm in both networks and no techniques."""
  return tiny_gan()


@pytest.fixture(scope="module")
def lazy_r1():
  """R1 every 2 steps (D without batch norm, as R1 requires)."""
  return tiny_gan(loss__r1_gamma=10.0, loss__r1_every=2, model__d_batch_norm=False)


# --- D's view of images ---

def view(gan, images, key, at_step):
  """D's view of `images` by this device's `key` (no global-batch key, no technique state)."""
  return step.d_view(gan, images, step.view_keys(key, None), at_step, {})


def test_d_view_without_techniques_is_the_images(plain):
  x = images()
  np.testing.assert_array_equal(view(plain, x, jax.random.key(1), jnp.int32(0)), x)


def test_d_view_adds_instance_noise_of_the_annealed_std():
  gan = tiny_gan(train__instance_noise=0.2, train__instance_noise_steps=100)
  x, key = images(n=64), jax.random.key(1)
  noisy = view(gan, x, key, jnp.int32(50))  # half-way: std 0.1
  _, noise_key = jax.random.split(key)
  np.testing.assert_allclose(noisy - x, 0.1 * jax.random.normal(noise_key, x.shape), atol=1e-6)
  assert abs(float(jnp.std(noisy - x)) - 0.1) < 0.005
  np.testing.assert_array_equal(view(gan, x, key, jnp.int32(100)), x)  # annealed to 0


def test_d_view_augments_with_the_policy():
  gan = tiny_gan(augment__policy="translation")
  x, key = images(), jax.random.key(2)
  augment_key, _ = jax.random.split(key)
  viewed = view(gan, x, key, jnp.int32(0))
  np.testing.assert_array_equal(viewed, augment.augment(x, augment_key, ("translation",)))
  assert not np.array_equal(viewed, x)


# --- losses ---

LOGITS = (jnp.array([2.0, -1.0, 0.5, 3.0]), jnp.array([-2.0, 1.0, 0.0, -0.5]))


def test_d_logit_loss_is_the_loss_function_at_its_targets(plain):
  real, fake = LOGITS
  key = jax.random.key(3)
  np.testing.assert_allclose(step.d_logit_loss(plain, real, fake, key),
                             losses.ns_d_loss(real, fake, 1.0, 0.0), rtol=1e-6)
  smooth = tiny_gan(loss__real_label=0.9)
  np.testing.assert_allclose(step.d_logit_loss(smooth, real, fake, key),
                             losses.ns_d_loss(real, fake, 0.9, 0.0), rtol=1e-6)
  flips = tiny_gan(loss__real_label=0.9, loss__flip_prob=0.4)
  flipped = step.d_logit_loss(flips, real, fake, key)
  np.testing.assert_allclose(flipped, losses.ns_d_loss(real, fake, *labels.label_targets(
      key, 4, 0.9, 0.4)), rtol=1e-6)
  assert float(flipped) != float(losses.ns_d_loss(real, fake, 0.9, 0.0))  # some label flipped
  hinge = tiny_gan(loss__name="hinge")
  np.testing.assert_allclose(step.d_logit_loss(hinge, real, fake, key),
                             losses.hinge_d_loss(real, fake), rtol=1e-6)


@pytest.fixture(scope="module")
def plain_d_loss(plain):
  """d_loss of the plain GAN on fixed images, and D's logits computed apart from it."""
  state, key = initial_state(plain), jax.random.key(4)
  real, fake = images(seed=1), images(seed=2)

  def run(d_params, d_stats):
    total, aux = step.d_loss(plain, d_params, d_stats, real, fake, key, jnp.int32(0),
                             jax.random.key(8), {})
    _, _, real_drop, fake_drop, label_key, _ = jax.random.split(key, 6)
    real_logits, stats = step.discriminate(plain, d_params, d_stats, real, real_drop)
    fake_logits, stats = step.discriminate(plain, d_params, stats, fake, fake_drop)
    return total, aux, (real_logits, fake_logits, stats, label_key)

  return mapped(run)(state.d_params, state.d_batch_stats)


def test_d_loss_without_penalty_is_the_loss_of_d_logits(plain, plain_d_loss):
  total, aux, (real_logits, fake_logits, stats, label_key) = plain_d_loss
  np.testing.assert_array_equal(aux.real_logits, real_logits)
  np.testing.assert_array_equal(aux.fake_logits, fake_logits)
  assert aux.real_logits.shape == (8,)
  assert float(aux.penalty) == 0.0
  assert float(total) == float(aux.loss)
  np.testing.assert_allclose(aux.loss, step.d_logit_loss(plain, real_logits, fake_logits,
                                                         label_key), rtol=1e-6)
  # Both forwards moved D's running statistics.
  for new, old in zip(jax.tree.leaves(aux.batch_stats),
                      jax.tree.leaves(initial_state(plain).d_batch_stats)):
    assert not np.array_equal(new, old)
  for a, b in zip(jax.tree.leaves(aux.batch_stats), jax.tree.leaves(stats)):
    np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def r1_parts(lazy_r1):
  """d_loss and d_penalty of the lazy-R1 GAN on steps 0 and 1, and R1 computed apart."""
  state, key = initial_state(lazy_r1), jax.random.key(5)
  real, fake = images(seed=1), images(seed=2)

  def run(d_params):
    d_losses = [step.d_loss(lazy_r1, d_params, {}, real, fake, key, jnp.int32(s),
                            jax.random.key(8), {}) for s in (0, 1)]

    def critic(x, dropout_key):
      return step.discriminate(lazy_r1, d_params, {}, x, dropout_key)[0]

    penalties = [step.d_penalty(lazy_r1, DRound(critic, real, fake, None, None, (None, None),
                                                key, (None, None), jnp.int32(s), {}))
                 for s in (0, 1)]
    _, dropout_key = jax.random.split(key)
    r1 = losses.r1_penalty(
        lambda x: step.discriminate(lazy_r1, d_params, {}, x, dropout_key)[0], real)
    return d_losses, penalties, r1

  return mapped(run)(state.d_params)


def test_d_loss_adds_the_penalty_only_when_on(r1_parts):
  d_losses, _, _ = r1_parts
  (total_on, aux_on), (total_off, aux_off) = d_losses
  assert float(aux_on.penalty) > 0.0
  np.testing.assert_allclose(total_on, aux_on.loss + aux_on.penalty, rtol=1e-6)
  assert float(aux_off.penalty) == 0.0 and float(total_off) == float(aux_off.loss)


def test_lazy_r1_is_scaled_by_its_interval(r1_parts):
  _, (on, off), r1 = r1_parts
  np.testing.assert_allclose(on, 0.5 * 10.0 * 2 * r1, rtol=1e-5)
  assert float(off) == 0.0


@pytest.fixture(scope="module")
def g_parts(plain):
  """g_loss of fakes, and G's gradients by pull-back and by direct differentiation."""
  state, key, z = initial_state(plain), jax.random.key(6), jax.random.normal(jax.random.key(7),
                                                                             (8, 16))

  def run(state):
    d = updates.NetState(state.d_params, state.d_opt_state, state.d_batch_stats)
    fake, pullback, g_stats = jax.vjp(
        lambda p: step.generate(plain, p, state.g_batch_stats, z), state.g_params, has_aux=True)
    loss, d_stats = step.g_loss(plain, d.params, d.batch_stats, fake, key, jnp.int32(0), None, {})
    _, dropout_key = jax.random.split(key)  # no techniques: D sees the fakes as they are
    logits, _ = step.discriminate(plain, d.params, d.batch_stats, fake, dropout_key)
    ctx = step.StepContext(jnp.int32(0), jax.random.key(9), {})
    by_pullback = step.g_gradients_by_pullback(plain, d, fake, pullback, key, ctx)
    direct = jax.grad(lambda p: step.g_loss(
        plain, d.params, d.batch_stats, step.generate(plain, p, state.g_batch_stats, z)[0],
        key, jnp.int32(0), None, {})[0])(state.g_params)
    return fake, g_stats, loss, d_stats, logits, by_pullback, direct

  return mapped(run)(state)


def test_generate_makes_images_and_moves_g_statistics(plain, g_parts):
  fake, g_stats, *_ = g_parts
  assert fake.shape == (8, 8, 8, 3)
  assert float(jnp.max(jnp.abs(fake))) <= 1.0
  old = jax.tree.leaves(initial_state(plain).g_batch_stats)
  assert old and all(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(g_stats), old))


def test_g_loss_is_the_loss_of_d_logits_of_the_fakes(plain, g_parts):
  _, _, loss, _, logits, by_pullback, _ = g_parts
  np.testing.assert_allclose(loss, losses.ns_g_loss(logits), rtol=1e-6)
  np.testing.assert_allclose(by_pullback[1], loss, rtol=1e-6)


def test_pullback_gradients_equal_direct_gradients(g_parts):
  *_, (grads, _, _), direct = g_parts
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(direct)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  assert any(np.any(a != 0) for a in jax.tree.leaves(grads))


# --- the guarded update ---

@pytest.fixture(scope="module")
def net():
  params = {"w": jnp.ones(3)}
  optimizer = optim.adam(0.1, 0.5, 0.999)
  return optimizer, updates.NetState(params, optimizer.init(params), {"mean": jnp.zeros(3)})


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_guarded_update_keeps_everything_when_a_gradient_is_nan(net):
  optimizer, before = net
  bad = {"w": jnp.array([1.0, jnp.nan, 0.0])}
  after, applied, skipped = updates.guarded_update(optimizer, None, jnp.int32(0), jnp.array(True),
                                                   bad, before, {"mean": jnp.ones(3)})
  assert_trees_equal(after, before)  # params, optimiser state and batch statistics
  assert (float(applied), float(skipped)) == (0.0, 1.0)


def test_guarded_update_not_allowed_keeps_everything_and_counts_no_skip(net):
  optimizer, before = net
  after, applied, skipped = updates.guarded_update(optimizer, None, jnp.int32(0),
                                                   jnp.array(False), {"w": jnp.ones(3)}, before,
                                                   {"mean": jnp.ones(3)})
  assert_trees_equal(after, before)
  assert (float(applied), float(skipped)) == (0.0, 0.0)


def test_guarded_update_applies_with_the_scheduled_learning_rate(net):
  optimizer, before = net
  grads = {"w": jnp.array([1.0, -1.0, 0.0])}
  after, applied, skipped = updates.guarded_update(optimizer, lambda s: 0.01 * s, jnp.int32(3),
                                                   jnp.array(True), grads, before,
                                                   {"mean": jnp.ones(3)})
  assert (float(applied), float(skipped)) == (1.0, 0.0)
  np.testing.assert_allclose(after.opt_state.hyperparams["learning_rate"], 0.03, rtol=1e-6)
  # Adam's first step moves each weight by the learning rate against its gradient's sign.
  np.testing.assert_allclose(after.params["w"], [0.97, 1.03, 1.0], rtol=1e-5)
  np.testing.assert_array_equal(after.batch_stats["mean"], 1.0)


def test_all_finite_and_keep_if():
  assert bool(updates.all_finite({"a": jnp.ones(2), "b": (jnp.zeros(()),)}))
  assert not bool(updates.all_finite({"a": jnp.ones(2), "b": (jnp.array(jnp.inf),)}))
  assert not bool(updates.all_finite([jnp.array([0.0, jnp.nan])]))
  new, old = {"a": jnp.ones(2), "b": jnp.full(3, 2.0)}, {"a": jnp.zeros(2), "b": jnp.zeros(3)}
  assert_trees_equal(updates.keep_if(jnp.array(True), new, old), new)
  assert_trees_equal(updates.keep_if(jnp.array(False), new, old), old)


def test_ema_update_is_the_weighted_average():
  ema = updates.ema_update({"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, 6.0])}, 0.75)
  np.testing.assert_allclose(ema["w"], [1.5, 3.0], rtol=1e-6)


# --- latents and keys under the mapped axis ---

def latents_and_keys(devices, global_batch=16):
  """(global z, z of update 1, each device's key data), gathered from `devices` devices."""
  local = global_batch // devices

  def run(step_key):
    return (updates.global_latents(step_key, local, 4),
            updates.extra_latents(step_key, 1, local, 4),
            jax.random.key_data(updates.device_key(step_key))[None])

  return mapped(run, devices, out_specs=P(BATCH_AXIS))(jax.random.key(8))


def test_global_latents_do_not_depend_on_the_device_count():
  one_z, one_extra, one_key = latents_and_keys(1)
  eight_z, eight_extra, eight_keys = latents_and_keys(8)
  step_key = jax.random.key(8)
  np.testing.assert_array_equal(one_z, jax.random.normal(step_key, (16, 4)))
  np.testing.assert_array_equal(eight_z, one_z)
  # Update 1's latents: one global draw too, from the stream after the n device keys'
  # (so, unlike the first update's, they depend on the device count n).
  for extra, n in ((one_extra, 1), (eight_extra, 8)):
    np.testing.assert_array_equal(
        extra, jax.random.normal(jax.random.fold_in(step_key, n + 1), (16, 4)))
  # Per-device keys: step_key with the device index folded in, all different.
  for index, key_data in enumerate(eight_keys):
    np.testing.assert_array_equal(key_data,
                                  jax.random.key_data(jax.random.fold_in(step_key, index)))
  np.testing.assert_array_equal(one_key[0], eight_keys[0])
  assert len({bytes(np.asarray(k)) for k in eight_keys}) == 8
