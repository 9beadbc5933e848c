"""DCGAN generator/discriminator shapes, initialisation and parameter counts."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import celeba64
from gan_jax.training import family
from gan_jax.models.dcgan import Discriminator, Generator
from gan_jax.models.dcgan import num_upsamplings, start_size
from gan_jax.training.state import create_state, param_count


@pytest.mark.parametrize("resolution", [16, 32, 36, 64, 128])
def test_output_shapes_and_range(resolution):
  g, d = Generator(resolution=resolution, width=4), Discriminator(resolution=resolution, width=4)
  z = jax.random.normal(jax.random.key(0), (3, 10))
  # Shapes only: tracing is enough for D, and far cheaper than compiling.
  g_vars = jax.jit(lambda key: g.init(key, z, train=False))(jax.random.key(1))
  images = jax.jit(lambda v: g.apply(v, z, train=False))(g_vars)
  assert images.shape == (3, resolution, resolution, 3)
  assert float(jnp.max(jnp.abs(images))) <= 1.0
  d_vars = jax.eval_shape(lambda: d.init(jax.random.key(2), images, train=False))
  assert jax.eval_shape(lambda v: d.apply(v, images, train=False), d_vars).shape == (3,)


def test_36px_grows_from_9():
  assert start_size(36) == 9 and num_upsamplings(36) == 2
  assert start_size(64) == 4 and num_upsamplings(64) == 4


def test_bad_resolution_and_shape_are_reported():
  with pytest.raises(ValueError, match="data.resolution=48 is not"):
    Generator(resolution=48).init(jax.random.key(0), jnp.zeros((1, 8)), train=False)
  d = Discriminator(resolution=32, width=4)
  with pytest.raises(ValueError, match="discriminator for 32 px got images of shape"):
    d.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)


def test_init_std_is_dcgan_002():
  gan = family.bundle(celeba64.get_config())
  state = jax.jit(lambda key: create_state(gan, key))(jax.random.key(0))
  for params in (state.g_params, state.d_params):
    kernels = [np.asarray(v).ravel() for path, v in jax.tree_util.tree_leaves_with_path(params)
               if "kernel" in jax.tree_util.keystr(path)]
    values = np.concatenate(kernels)
    assert abs(values.std() - 0.02) < 0.001 and abs(values.mean()) < 0.001
    scales = [np.asarray(v).ravel() for path, v in jax.tree_util.tree_leaves_with_path(params)
              if "scale" in jax.tree_util.keystr(path)]
    assert abs(np.concatenate(scales).mean() - 1.0) < 0.01


def test_batch_norm_switches():
  config = celeba64.get_config()
  config.model.width, config.model.g_batch_norm, config.model.d_batch_norm = 4, True, False
  state = jax.eval_shape(lambda: create_state(family.bundle(config), jax.random.key(0)))
  assert state.g_batch_stats and not state.d_batch_stats


def test_celeba64_matches_dcgan_paper_size():
  state = jax.eval_shape(lambda: create_state(family.bundle(celeba64.get_config()),
                                              jax.random.key(0)))
  # The PyTorch DCGAN example has 3,576,704 / 2,765,568 weights; we add 3 + 65 biases.
  # The PyTorch DCGAN example has 3,576,704 / 2,765,568 parameters; we add
  # a bias on G's output (3) and on D's first conv and logit (64 + 1).
  assert param_count(state.g_params) == 3_576_704 + 3
  assert param_count(state.d_params) == 2_765_568 + 65


def test_param_count_command():
  out = subprocess.run([sys.executable, "-m", "gan_jax.models", "--config", "configs/ffhq64.py"],
                       capture_output=True, text=True, check=True, env=_cpu_env())
  assert "generator:" in out.stdout and "discriminator:" in out.stdout
  assert "latent 64" in out.stdout


def _cpu_env():
  import os
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return env
