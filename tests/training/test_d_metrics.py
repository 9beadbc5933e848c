"""What each loss logs about D's outputs: values on known logits, and the step's metric names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from gan_jax.training import family
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training import losses
from gan_jax.training.state import create_state
from gan_jax.training.step import make_train_step

REAL = jnp.array([2.0, -1.0, 0.5, 0.7])
FAKE = jnp.array([-3.0, 0.0, 1.5, 0.2])
BCE_KEYS = {"d_real", "d_fake", "d_real_acc", "d_fake_acc"}
RAW_KEYS = {"d_real_logit", "d_fake_logit", "d_real_acc", "d_fake_acc"}


def host(metrics):
  return {name: float(value) for name, value in metrics.items()}


@pytest.mark.parametrize("name", ["ns", "minimax"])
def test_bce_losses_log_probabilities_and_accuracy_at_logit_0(name):
  metrics = host(losses.get_loss(name).d_metrics(REAL, FAKE))
  assert set(metrics) == BCE_KEYS
  sigmoid = lambda x: 1 / (1 + np.exp(-np.asarray(x, np.float64)))
  assert metrics["d_real"] == pytest.approx(sigmoid(REAL).mean(), rel=1e-6)
  assert metrics["d_fake"] == pytest.approx(sigmoid(FAKE).mean(), rel=1e-6)
  assert metrics["d_real_acc"] == 0.75   # 2, 0.5, 0.7 > 0
  assert metrics["d_fake_acc"] == 0.5    # -3 and 0 are not > 0: called fake


def test_lsgan_logs_raw_outputs_and_accuracy_at_one_half():
  metrics = host(losses.get_loss("lsgan").d_metrics(REAL, FAKE))
  assert set(metrics) == RAW_KEYS
  assert metrics["d_real_logit"] == pytest.approx(0.55)
  assert metrics["d_fake_logit"] == pytest.approx(-0.325)
  assert metrics["d_real_acc"] == 0.5    # 2, 0.7 > 0.5 (0.5 itself is not)
  assert metrics["d_fake_acc"] == 0.75   # -3, 0, 0.2 <= 0.5


def test_hinge_logs_raw_outputs_and_accuracy_at_0():
  metrics = host(losses.get_loss("hinge").d_metrics(REAL, FAKE))
  assert set(metrics) == RAW_KEYS
  assert metrics["d_real_logit"] == pytest.approx(0.55)
  assert (metrics["d_real_acc"], metrics["d_fake_acc"]) == (0.75, 0.5)


def test_wasserstein_accuracy_is_at_the_batch_midpoint_and_shift_invariant():
  wgan = losses.get_loss("wgan-gp")
  metrics = host(wgan.d_metrics(REAL, FAKE))
  assert set(metrics) == RAW_KEYS
  # Midpoint (0.55 - 0.325) / 2 = 0.1125: reals 2, 0.5, 0.7 above; fakes -3, 0 below.
  assert (metrics["d_real_acc"], metrics["d_fake_acc"]) == (0.75, 0.5)
  shifted = host(wgan.d_metrics(REAL + 40.0, FAKE + 40.0))
  assert (shifted["d_real_acc"], shifted["d_fake_acc"]) == (0.75, 0.5)
  assert shifted["d_real_logit"] == pytest.approx(40.55)
  # Separated scores: every image on its side, whatever the offset.
  separated = host(wgan.d_metrics(jnp.array([5.0, 6.0]), jnp.array([3.0, 4.0])))
  assert (separated["d_real_acc"], separated["d_fake_acc"]) == (1.0, 1.0)


def test_wasserstein_midpoint_is_the_global_batchs():
  """Two 'devices' of 2 images each, averaged as the step does, give the 4-image values."""
  wgan = losses.get_loss("wgan-gp")

  def per_device(real, fake):
    return jax.lax.pmean(wgan.d_metrics(real, fake, axis_name="d"), "d")

  split = jax.vmap(per_device, axis_name="d")(REAL.reshape(2, 2), FAKE.reshape(2, 2))
  whole = host(wgan.d_metrics(REAL, FAKE))
  for name, value in split.items():
    np.testing.assert_allclose(np.asarray(value), whole[name], rtol=1e-6)
  # A per-device midpoint would differ here: device 0's is (0.5 - 1.5) / 2.
  assert whole["d_real_acc"] == 0.75


@pytest.mark.parametrize("loss,keys", [("ns", BCE_KEYS), ("minimax", BCE_KEYS),
                                       ("lsgan", RAW_KEYS), ("hinge", RAW_KEYS),
                                       ("wgan-gp", RAW_KEYS)])
def test_step_logs_the_losses_metrics(loss, keys):
  config = tiny.get_config()
  config.loss.name = loss
  config.model.d_batch_norm = loss != "wgan-gp"
  gan = family.bundle(config)
  state = jax.eval_shape(lambda key: create_state(gan, key), jax.random.key(0))
  batch = jax.ShapeDtypeStruct((1, 8, 16, 16, 3), jnp.uint8)  # one device's share
  step = jax.vmap(make_train_step(gan), in_axes=(None, 0, None), axis_name=BATCH_AXIS)
  _, metrics = jax.eval_shape(step, state, batch, jax.random.key(1))  # traced, not compiled
  d_output_keys = BCE_KEYS | RAW_KEYS
  assert {name for name in metrics if name in d_output_keys} == keys
  assert {"d_loss", "g_loss", "d_grad_norm"} <= set(metrics)
