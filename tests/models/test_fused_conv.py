"""The residual family's CPU convolutions (models/fused_conv.py) equal the plain ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn

from gan_jax.models import fused_conv, resnet

CASES = [  # (input shape, kernel shape, resample)
    ((2, 8, 8, 5), (3, 3, 5, 7), None),
    ((2, 8, 8, 5), (1, 1, 5, 7), None),
    ((2, 4, 6, 5), (3, 3, 5, 7), "upsample_before"),
    ((2, 8, 6, 5), (3, 3, 5, 7), "pool_after"),
]


def _loss_and_grads(impl, resample, x, kernel, bias, weights):
  def loss(x, kernel, bias):
    y = fused_conv.conv(x, kernel, bias, resample, impl)
    return jnp.sum(y * weights), y
  return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(x, kernel, bias)


@pytest.mark.parametrize("x_shape, k_shape, resample", CASES)
def test_im2col_equals_the_plain_convolution_in_values_and_gradients(x_shape, k_shape, resample):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=k_shape), jnp.float32)
  bias = jnp.asarray(rng.normal(size=k_shape[-1:]), jnp.float32)
  out_shape = fused_conv.conv(x, kernel, bias, resample, "lax").shape
  weights = jnp.asarray(rng.normal(size=out_shape), jnp.float32)
  plain_grads, plain = _loss_and_grads("lax", resample, x, kernel, bias, weights)
  fast_grads, fast = _loss_and_grads("im2col", resample, x, kernel, bias, weights)
  np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-5)
  for fast_grad, plain_grad in zip(fast_grads, plain_grads):
    np.testing.assert_allclose(fast_grad, plain_grad, rtol=1e-5, atol=1e-4)
  # 'auto' on this CPU: the folded forms where there is resampling, XLA's convolution otherwise.
  auto_grads, auto = _loss_and_grads("auto", resample, x, kernel, bias, weights)
  np.testing.assert_array_equal(auto, fast if resample else plain)


def test_plain_form_is_the_upsample_conv_pool_it_replaces():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
  conv = lambda x: jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_array_equal(fused_conv.conv(x, kernel, None, "upsample_before", "lax"),
                                conv(jnp.repeat(jnp.repeat(x, 2, 1), 2, 2)))
  np.testing.assert_array_equal(fused_conv.conv(x, kernel, None, "pool_after", "lax"),
                                nn.avg_pool(conv(x), (2, 2), (2, 2)))


def test_cpu_gradients_of_the_folded_forms_are_matrix_products():
  """No convolution left in the compiled gradient: XLA:CPU's slow path is gone."""
  x = jnp.ones((2, 8, 8, 4))
  kernel = jnp.ones((3, 3, 4, 4))
  for resample in ("upsample_before", "pool_after"):
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(fused_conv.conv(x, k, None, resample, "auto")),
                            argnums=(0, 1)))
    hlo = grad.lower(x, kernel).compile().as_text()
    assert " convolution(" not in hlo and " dot(" in hlo, resample


def test_conv_module_has_nn_conv_parameters():
  """Same names, shapes and initial values as nn.Conv: checkpoints and seeds carry over."""
  x = jnp.ones((1, 8, 8, 3))
  ours = fused_conv.Conv(5, 3, resample="pool_after", kernel_init=resnet.resnet_init)
  theirs = nn.Conv(5, (3, 3), padding="SAME", kernel_init=resnet.resnet_init)
  key = jax.random.key(3)
  jax.tree.map(np.testing.assert_array_equal, ours.init(key, x), theirs.init(key, x))


def test_unknown_impl_is_refused():
  with pytest.raises(ValueError, match="not one of auto, lax, im2col"):
    fused_conv.conv(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), None, None, "cudnn")


def test_resnet_models_agree_across_impls():
  """A 16 px residual G and D give the same outputs with XLA's and the folded convolutions."""
  z = jax.random.normal(jax.random.key(0), (4, 16))
  outputs = {}
  for impl in ("lax", "auto"):
    generator = resnet.Generator(resolution=16, width=8, conv_impl=impl)
    discriminator = resnet.Discriminator(resolution=16, width=8, conv_impl=impl)
    g_vars = generator.init(jax.random.key(1), z, train=False)
    images = generator.apply(g_vars, z, train=False)
    d_vars = discriminator.init(jax.random.key(2), images, train=False)
    outputs[impl] = (images, discriminator.apply(d_vars, images, train=False))
  for ours, plain in zip(outputs["auto"], outputs["lax"]):
    np.testing.assert_allclose(ours, plain, rtol=1e-4, atol=1e-5)
