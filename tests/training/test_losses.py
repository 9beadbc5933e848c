"""The maths of the GAN losses, label targets and gradient penalties on known inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.training import losses
from gan_jax.training.techniques import labels

REAL = jnp.array([2.0, -1.0, 0.5])
FAKE = jnp.array([-3.0, 0.0, 1.5])


def softplus(x):
  return np.log1p(np.exp(np.asarray(x, np.float64)))


def test_ns_loss_values():
  ns = losses.get_loss("ns")
  expected_d = softplus(-REAL).mean() + softplus(FAKE).mean()
  np.testing.assert_allclose(ns.d_loss(REAL, FAKE), expected_d, rtol=1e-6)
  np.testing.assert_allclose(ns.g_loss(FAKE), softplus(-FAKE).mean(), rtol=1e-6)
  # At logit 0 D is undecided: log 2 for each term.
  np.testing.assert_allclose(ns.d_loss(jnp.zeros(4), jnp.zeros(4)), 2 * np.log(2), rtol=1e-6)


def test_minimax_is_saturating():
  minimax = losses.get_loss("minimax")
  np.testing.assert_allclose(minimax.d_loss(REAL, FAKE), losses.get_loss("ns").d_loss(REAL, FAKE))
  # G minimises log(1 - sigmoid(f)).
  expected = np.log(1 - 1 / (1 + np.exp(-np.asarray(FAKE, np.float64)))).mean()
  np.testing.assert_allclose(minimax.g_loss(FAKE), expected, rtol=1e-6)
  # Its gradient vanishes where D confidently rejects a fake; the ns one does not.
  very_fake = jnp.array([-10.0])
  assert abs(jax.grad(minimax.g_loss)(very_fake)[0]) < 1e-4
  assert abs(jax.grad(losses.get_loss("ns").g_loss)(very_fake)[0]) > 0.99


def test_lsgan_values():
  lsgan = losses.get_loss("lsgan")
  real, fake = np.asarray(REAL), np.asarray(FAKE)
  np.testing.assert_allclose(lsgan.d_loss(REAL, FAKE),
                             0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean(), rtol=1e-6)
  np.testing.assert_allclose(lsgan.g_loss(FAKE), 0.5 * ((fake - 1) ** 2).mean(), rtol=1e-6)


def test_hinge_values():
  hinge = losses.get_loss("hinge")
  # relu(1 - r) = [0, 2, 0.5]; relu(1 + f) = [0, 1, 2.5].
  np.testing.assert_allclose(hinge.d_loss(REAL, FAKE), 2.5 / 3 + 3.5 / 3, rtol=1e-6)
  np.testing.assert_allclose(hinge.g_loss(FAKE), -np.mean(FAKE), rtol=1e-6)
  assert not hinge.label_targets


def test_wasserstein_values():
  wgan = losses.get_loss("wgan-gp")
  np.testing.assert_allclose(wgan.d_loss(REAL, FAKE), np.mean(FAKE) - np.mean(REAL), rtol=1e-6)
  np.testing.assert_allclose(wgan.g_loss(FAKE), -np.mean(FAKE), rtol=1e-6)
  assert not wgan.label_targets


def test_unknown_loss_names_the_choices():
  with pytest.raises(ValueError, match="hinge"):
    losses.get_loss("bce")


@pytest.mark.parametrize("name", ["ns", "lsgan"])
def test_smoothed_targets_change_d_loss(name):
  loss = losses.get_loss(name)
  smoothed = loss.d_loss(REAL, FAKE, 0.9, 0.0)
  if name == "ns":
    real = np.asarray(REAL, np.float64)
    expected = (0.9 * softplus(-real) + 0.1 * softplus(real)).mean() + softplus(FAKE).mean()
  else:
    expected = 0.5 * ((np.asarray(REAL) - 0.9) ** 2).mean() + 0.5 * (np.asarray(FAKE) ** 2).mean()
  np.testing.assert_allclose(smoothed, expected, rtol=1e-6)


def test_label_targets_smoothing_and_flipping():
  key = jax.random.key(0)
  real_t, fake_t = labels.label_targets(key, 5, real_label=0.9, flip_prob=0.0)
  np.testing.assert_allclose(real_t, 0.9)   # one-sided: only the real label is smoothed
  np.testing.assert_allclose(fake_t, 0.0)
  # Always flipping swaps the labels.
  real_t, fake_t = labels.label_targets(key, 5, real_label=0.9, flip_prob=1.0)
  np.testing.assert_allclose(real_t, 0.0)
  np.testing.assert_allclose(fake_t, 0.9)
  # With p = 0.25 about a quarter of each side flips, independently.
  real_t, fake_t = labels.label_targets(key, 20_000, real_label=1.0, flip_prob=0.25)
  assert set(np.unique(real_t)) == {0.0, 1.0} and set(np.unique(fake_t)) == {0.0, 1.0}
  assert abs(float(jnp.mean(real_t == 0.0)) - 0.25) < 0.02
  assert abs(float(jnp.mean(fake_t == 1.0)) - 0.25) < 0.02
  assert float(jnp.mean((real_t == 0.0) == (fake_t == 1.0))) < 0.8   # not the same draws


def test_gradient_penalty_is_zero_for_unit_norm_linear_critic():
  shape = (4, 3, 3, 2)
  w = jax.random.normal(jax.random.key(1), shape[1:])
  w = w / jnp.linalg.norm(w)

  def critic(x):
    return jnp.sum(x * w, axis=(1, 2, 3)) + 0.3

  real = jax.random.normal(jax.random.key(2), shape)
  fake = jax.random.normal(jax.random.key(3), shape)
  assert float(losses.gradient_penalty(critic, real, fake, jax.random.key(4))) < 1e-10
  # Twice the weights: every gradient norm is 2, so the penalty is (2 - 1)^2 = 1.
  penalty = losses.gradient_penalty(lambda x: 2 * critic(x), real, fake, jax.random.key(4))
  np.testing.assert_allclose(penalty, 1.0, rtol=1e-5)


def test_gradient_penalty_uses_interpolates():
  # critic(x) = sum(x^2)/2 has gradient x, so the norm is that of the interpolate.
  real = jnp.full((3, 2, 2, 1), 1.0)
  fake = jnp.zeros((3, 2, 2, 1))
  key = jax.random.key(5)
  eps = jax.random.uniform(key, (3, 1, 1, 1))
  norms = eps[:, 0, 0, 0] * 2.0          # ||eps * ones(4)|| = 2 eps
  penalty = losses.gradient_penalty(lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2, 3)), real, fake, key)
  np.testing.assert_allclose(penalty, np.mean((np.asarray(norms) - 1) ** 2), rtol=1e-5)


def test_r1_penalty_on_quadratic_discriminator():
  # D(x) = sum(a * x^2) has gradient 2 a x, so ||grad||^2 = 4 sum(a^2 x^2).
  a = jnp.array([0.5, -1.0, 2.0]).reshape(1, 1, 3)
  real = jax.random.normal(jax.random.key(6), (5, 2, 1, 3))
  penalty = losses.r1_penalty(lambda x: jnp.sum(a * x ** 2, axis=(1, 2, 3)), real)
  expected = np.mean(np.sum(4 * np.asarray(a) ** 2 * np.asarray(real) ** 2, axis=(1, 2, 3)))
  np.testing.assert_allclose(penalty, expected, rtol=1e-5)
