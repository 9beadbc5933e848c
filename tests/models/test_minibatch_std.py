"""The minibatch-std channel (models/layers.py) and D's model.d_minibatch_std option."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from gan_jax.training import family
from gan_jax.errors import ConfigError
from gan_jax.models import layers


def test_channel_is_the_mean_std_over_each_group_of_consecutive_images():
  x = jnp.asarray(np.random.RandomState(0).normal(size=(6, 2, 2, 3)), jnp.float32)
  out = layers.minibatch_std(x, group_size=3)
  assert out.shape == (6, 2, 2, 4)
  np.testing.assert_array_equal(out[..., :3], x)
  for first in (0, 3):
    group = np.asarray(x[first:first + 3], np.float64)
    expected = np.sqrt(group.var(axis=0) + 1e-8).mean()
    np.testing.assert_allclose(out[first:first + 3, ..., 3], expected, rtol=1e-5)
  # Consecutive groups: two devices holding 3 images each compute what one device does.
  halves = jnp.concatenate([layers.minibatch_std(x[:3], 3), layers.minibatch_std(x[3:], 3)])
  np.testing.assert_array_equal(halves, out)
  # Identical images: std 0 (up to the epsilon).
  same = layers.minibatch_std(jnp.broadcast_to(x[:1], x.shape), 3)
  np.testing.assert_allclose(same[..., 3], 1e-4, rtol=1e-3)


def test_group_larger_than_the_batch_uses_the_whole_batch_and_a_remainder_is_refused():
  x = jnp.ones((2, 2, 2, 1))
  assert layers.minibatch_std(x, group_size=4).shape == (2, 2, 2, 2)
  with pytest.raises(ConfigError, match="must divide the images D sees at once on a device"):
    layers.minibatch_std(jnp.ones((6, 2, 2, 1)), group_size=4)


def eval_logits(config, params_and_stats, images):
  _, discriminator = family.build_networks(config)
  return discriminator.apply(params_and_stats, images, train=False)


@pytest.mark.parametrize("on", [False, True])
def test_d_output_depends_on_the_batch_only_with_minibatch_std(on):
  config = tiny.get_config()
  config.model.d_minibatch_std = on
  _, discriminator = family.build_networks(config)
  images = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3), minval=-1.0, maxval=1.0)
  variables = discriminator.init({"params": jax.random.key(1)}, images, train=False)
  # A trained D weighs the channel; at initialisation its weight is tiny, so make it count.
  if on:
    kernel = variables["params"]["logit"]["kernel"]    # (4 * 4 * channels, 1), channels last
    channels = kernel.shape[0] // 16
    variables["params"]["logit"]["kernel"] = kernel.at[channels - 1::channels].set(1.0)
  varied = eval_logits(config, variables, images)
  identical = eval_logits(config, variables, jnp.broadcast_to(images[:1], images.shape))
  if on:
    assert abs(float(varied[0] - identical[0])) > 1e-3
  else:
    np.testing.assert_allclose(varied[0], identical[0], rtol=1e-6)
    assert variables["params"]["logit"]["kernel"].shape[0] == 4 * 4 * 16  # no extra channel


def test_bad_group_size_is_refused_at_start_up():
  config = tiny.get_config()
  config.model.d_minibatch_std, config.model.d_minibatch_std_group = True, 0
  with pytest.raises(ConfigError, match="model.d_minibatch_std_group=0 must be >= 1"):
    family.check(config)
