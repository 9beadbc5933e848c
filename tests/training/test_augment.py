"""DiffAugment: deterministic per key, differentiable, and each operation does what it says."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.training import augment

POLICY = "color,translation,cutout"


def images(n=4, size=8, seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, size, size, 3), minval=-1.0, maxval=1.0)


def test_same_key_same_result_other_key_other_result():
  x = images()
  a = augment.augment(x, jax.random.key(1), POLICY)
  b = augment.augment(x, jax.random.key(1), POLICY)
  c = augment.augment(x, jax.random.key(2), POLICY)
  assert a.shape == x.shape and a.dtype == x.dtype
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_jit_matches_eager():
  x = images()
  eager = augment.augment(x, jax.random.key(3), POLICY)
  jitted = jax.jit(augment.augment, static_argnums=2)(x, jax.random.key(3), POLICY)
  np.testing.assert_allclose(eager, jitted, atol=1e-6)


def test_gradients_are_finite_and_nonzero():
  x = images()

  def loss(x):
    return jnp.sum(jnp.sin(augment.augment(x, jax.random.key(4), POLICY)))

  grads = jax.grad(loss)(x)
  assert np.isfinite(grads).all()
  assert float(jnp.abs(grads).sum()) > 0


def test_empty_policy_is_identity():
  x = images()
  np.testing.assert_array_equal(augment.augment(x, jax.random.key(0), ""), x)
  assert augment.parse_policy(" color , cutout ") == ("color", "cutout")


def test_unknown_policy_fails_with_choices():
  with pytest.raises(ValueError, match="translation"):
    augment.parse_policy("color,rotate")


def test_translation_shifts_by_whole_pixels_with_zero_fill():
  x = np.asarray(images(n=3, size=16))
  # 1/8 of 16 px: shifts in [-2, 2]; u = 0 gives -2, u -> 1 gives +2, u = 0.5 gives 0.
  u = jnp.array([[0.0, 0.999], [0.5, 0.5], [0.7, 0.1]])
  out = np.asarray(augment.translation(jnp.asarray(x), u))
  np.testing.assert_array_equal(out[1], x[1])
  for image, shifted, (dy, dx) in zip(x, out, [(-2, 2), (0, 0), (1, -2)]):
    expected = np.zeros_like(image)
    src = image[max(0, -dy):16 - max(0, dy), max(0, -dx):16 - max(0, dx)]
    expected[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    np.testing.assert_array_equal(shifted, expected)


def test_random_translation_stays_within_an_eighth():
  x = jnp.ones((64, 16, 16, 3))
  out = np.asarray(augment.augment(x, jax.random.key(5), "translation"))
  zero_rows = (out[..., 0] == 0).all(axis=2).sum(axis=1)
  zero_cols = (out[..., 0] == 0).all(axis=1).sum(axis=1)
  assert zero_rows.max() == 2 and zero_cols.max() == 2 and zero_rows.min() == 0


def test_cutout_zeroes_a_square_of_half_the_side():
  x = jnp.ones((3, 8, 8, 3))
  # Centres (row, col) at (4, 4), (0, 0) and (8, 3): a 4x4 square, clipped at the edges.
  u = jnp.array([[4.5 / 9, 4.5 / 9], [0.0, 0.0], [0.999, 3.5 / 9]])
  out = np.asarray(augment.cutout(x, u))
  zeroed = (out == 0).all(axis=-1)
  np.testing.assert_array_equal(zeroed, (out == 0).any(axis=-1))   # all channels together
  expected = np.zeros((3, 8, 8), bool)
  expected[0, 2:6, 2:6] = True
  expected[1, 0:2, 0:2] = True
  expected[2, 6:8, 1:5] = True
  np.testing.assert_array_equal(zeroed, expected)


def test_color_operations_on_chosen_values():
  x = jnp.array([[[[0.2, -0.4, 0.5]]], [[[0.0, 0.3, -0.3]]]])        # two 1x1 images
  half = jnp.full((2, 1), 0.5)
  np.testing.assert_allclose(augment.brightness(x, half), x, atol=1e-7)          # shift 0
  np.testing.assert_allclose(augment.brightness(x, jnp.zeros((2, 1))), x - 0.5, atol=1e-7)
  np.testing.assert_allclose(augment.saturation(x, half), x, atol=1e-7)           # factor 1
  grey = np.asarray(x).mean(axis=-1, keepdims=True)
  np.testing.assert_allclose(augment.saturation(x, jnp.zeros((2, 1))),
                             np.broadcast_to(grey, x.shape), atol=1e-7)           # factor 0
  np.testing.assert_allclose(augment.contrast(x, half), x, atol=1e-7)             # factor 1
  mean = np.asarray(x).mean(axis=(1, 2, 3), keepdims=True)
  np.testing.assert_allclose(augment.contrast(x, jnp.zeros((2, 1))),
                             mean + 0.5 * (np.asarray(x) - mean), atol=1e-7)      # factor 0.5


def test_color_keeps_constant_grey_images_grey():
  x = jnp.full((8, 4, 4, 3), 0.2)
  out = np.asarray(augment.augment(x, jax.random.key(7), "color"))
  # Saturation and contrast leave a flat grey image alone; brightness shifts it by < 0.5.
  assert np.allclose(out, out[:, :1, :1, :1], atol=1e-6)
  assert np.all(np.abs(out - 0.2) <= 0.5)
