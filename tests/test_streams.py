"""The random streams keep their keys: a change would alter every run's weights, data or samples."""

import jax
import numpy as np
import pytest

from gan_jax import streams
from gan_jax.explore import latents as latent_lib


def key_data(key):
  return np.asarray(jax.random.key_data(key)).tolist()


# Threefry key data of each stream, as every run and checkpoint so far has used them.
PINNED = [
    (lambda: streams.init_keys(jax.random.key(0))[2], [4146024105, 2718843009]),
    (lambda: streams.epoch_key(3, 2), [1024511538, 2603795180]),
    (lambda: streams.flip_key(0, 0), [2253465272, 413331119]),
    (lambda: streams.flip_key(3, 5), [2521096567, 645491205]),
    (lambda: streams.sample_noise_key(3), [1946498123, 2217676430]),
    (lambda: streams.latent_key(3, 7), [2647473427, 4234374204]),
]


@pytest.mark.parametrize("index", range(len(PINNED)))
def test_stream_keys_are_pinned(index):
  make, expected = PINNED[index]
  assert key_data(make()) == expected


@pytest.mark.parametrize("seed", [0, 3])
def test_known_overlaps_are_kept(seed):
  """The module docstring's table: streams folding small numbers into key(seed) share keys."""
  g_key, d_key, run_key = streams.init_keys(jax.random.key(seed))
  assert key_data(streams.epoch_key(seed, 0)) == key_data(g_key)
  assert (key_data(streams.epoch_key(seed, 1)) == key_data(streams.sample_noise_key(seed))
          == key_data(d_key) == key_data(streams.latent_key(seed, 1)))
  assert key_data(streams.epoch_key(seed, 2)) == key_data(run_key)


def test_seeded_latents_use_the_latent_stream():
  expected = jax.random.normal(streams.latent_key(streams.EVAL_SEED, 4), (8,), np.float32)
  np.testing.assert_array_equal(latent_lib.latents(streams.EVAL_SEED, 5, 8)[4], expected)
