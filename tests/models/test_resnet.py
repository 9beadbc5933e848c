"""The residual GAN family (model.name=resnet): shapes, spectral norm, refusals, bfloat16,
8 devices == 1 device, exact resume, and learning on real faces.

Networks are a few channels wide; 16 px (two blocks each way) stands in for the
trained sizes where the resolution is not the point. Compiled things are shared.
"""

import shutil

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import pixel_frechet, tiny_config
from configs import resnet32, resnet64
from gan_jax.training import family
from gan_jax import checkpoint, parallel, train
from gan_jax.errors import ConfigError
from gan_jax.models import resnet
from gan_jax.training.state import create_state
from gan_jax.training.step import make_train_step

LEARN_STEPS = 200


def tiny_resnet_config(**overrides):
  """configs/resnet32.py at 16 px, 8 channels, latent 16, batch 16; `section__option=value`."""
  return tiny_config({"data.resolution": 16, "data.crop": "center", "model.width": 8,
                      "model.latent_dim": 16, "train.batch_size": 16, "num_sample_images": 16},
                     base="resnet32", **overrides)


def networks(resolution, width=8, dtype="float32", conv_dtype=""):
  return family.build_networks(tiny_resnet_config(data__resolution=resolution, model__width=width,
                                         train__dtype=dtype, train__conv_dtype=conv_dtype))


def init(module, x):
  return jax.jit(module.init)(jax.random.key(0), x)


def forward(module, variables, x):
  return jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"])[0])(
      variables, x)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_shapes(resolution):
  generator, discriminator = networks(resolution)
  z, images = jnp.zeros((2, 16)), jnp.zeros((2, resolution, resolution, 3))
  g_variables = jax.eval_shape(generator.init, jax.random.key(0), z)
  fake = jax.eval_shape(lambda v: generator.apply(v, z, train=True, mutable=["batch_stats"])[0],
                        g_variables)
  assert (fake.shape, fake.dtype) == ((2, resolution, resolution, 3), jnp.float32)
  d_variables = jax.eval_shape(discriminator.init, jax.random.key(0), images)
  logits = jax.eval_shape(lambda v: discriminator.apply(v, images, train=False), d_variables)
  assert (logits.shape, logits.dtype) == ((2,), jnp.float32)
  # One up-block per doubling from 4x4, as many halvings in D plus its 4x4 block.
  blocks = {32: 3, 64: 4, 128: 5}[resolution]
  assert sorted(k for k in g_variables["params"] if k.startswith("up")) == [
      f"up{i}" for i in range(blocks)]
  assert sorted(k for k in d_variables["params"] if k.startswith("down")) == [
      f"down{i}" for i in range(blocks + 1)]


@pytest.fixture(scope="module")
def generator32():
  generator, _ = networks(32)
  z = jax.random.normal(jax.random.key(1), (8, 16))
  return generator, init(generator, z), z


def test_generator_range(generator32):
  generator, variables, z = generator32
  images = np.asarray(forward(generator, variables, z))
  assert images.shape == (8, 32, 32, 3) and images.dtype == np.float32
  assert np.all(np.abs(images) <= 1.0) and images.std() > 0.01
  assert not np.allclose(images[0], images[1])  # different z, different faces


def test_every_discriminator_layer_is_spectrally_normalised():
  _, discriminator = networks(64)  # 64 px: its last block widens, so it has a 1x1 shortcut
  variables = jax.eval_shape(discriminator.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  kernels = {path: kernel for path, kernel in
             flax.traverse_util.flatten_dict(variables["params"]).items() if path[-1] == "kernel"}
  stats = flax.traverse_util.flatten_dict(variables["batch_stats"])
  # 5 blocks x 2 convs, 4 pooled shortcuts + the last block's widening one, the dense logit.
  assert len(kernels) == 16
  for (*scope, layer, _), kernel in kernels.items():
    u = stats.get((*scope, f"{layer}_sn", f"{layer}/kernel/u"))
    assert u is not None and u.shape == (1, kernel.shape[-1]), (scope, layer)
  # Nothing but spectral norm keeps statistics in D (no batch norm).
  assert all(path[-1].endswith(("/u", "/sigma")) for path in stats)
  assert len(stats) == 2 * len(kernels)


def test_spectral_norm_vectors_advance_in_training_only():
  _, discriminator = networks(16)
  images = jax.random.uniform(jax.random.key(2), (4, 16, 16, 3), minval=-1, maxval=1)
  variables = init(discriminator, images)
  _, trained = discriminator.apply(variables, images, train=True, mutable=["batch_stats"])
  _, evaluated = discriminator.apply(variables, images, train=False, mutable=["batch_stats"])
  # Every layer's vector; the logit layer's alone cannot move (one output: u is +-1).
  u = lambda tree: [np.asarray(x) for path, x in jax.tree_util.tree_leaves_with_path(
      tree["batch_stats"]) if jax.tree_util.keystr(path).endswith("/u']")]
  assert len(u(variables)) > 1
  assert any(not np.allclose(a, b) for a, b in zip(u(trained), u(variables)))
  for a, b in zip(u(evaluated), u(variables)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("overrides, fix", [
    ({"model__d_batch_norm": True}, "--config.model.d_batch_norm=False"),
    ({"model__d_spectral_norm": False}, "--config.model.d_spectral_norm=True"),
    ({"model__d_dropout": 0.2}, "--config.model.d_dropout=0"),
    ({"model__d_final_size": 2}, "--config.model.d_final_size=0"),
    ({"model__conv_impl": "im2col_rgb"}, "--config.model.conv_impl=auto"),
    ({"model__d_minibatch_std": True}, "--config.model.d_minibatch_std=False"),
    ({"data__resolution": 36}, "--config.data.resolution"),
])
def test_check_refuses_what_it_cannot_build_in_one_line(overrides, fix):
  with pytest.raises(ConfigError) as error:
    family.check(tiny_resnet_config(**overrides))
  message = str(error.value)
  assert "\n" not in message and fix in message
  assert message.count("--config.") == 1  # only the flag that is wrong
  if "data__resolution" in overrides:
    assert "data.resolution=36" in message


def test_resnet_on_a_dcgan_config_names_every_flag_in_one_line():
  config = tiny_resnet_config()
  config.model.d_batch_norm, config.model.d_spectral_norm, config.model.d_final_size = True, False, 2
  with pytest.raises(ConfigError, match=r"set --config.model.d_batch_norm=False "
                     r"--config.model.d_spectral_norm=True --config.model.d_final_size=0 "):
    family.check(config)


def test_configs_build():
  for config in (resnet32.get_config(), resnet64.get_config()):
    gan = family.bundle(config)
    assert isinstance(gan.generator, resnet.Generator)
    assert isinstance(gan.discriminator, resnet.Discriminator)


@pytest.mark.parametrize("dtype, conv_dtype", [("bfloat16", ""), ("float32", "bfloat16")])
def test_bfloat16_forward(dtype, conv_dtype):
  """Computed in bf16 (or with bf16 conv operands): float32 params and outputs, close to f32."""
  reference, low = networks(16), networks(16, dtype=dtype, conv_dtype=conv_dtype)
  z = jax.random.normal(jax.random.key(3), (8, 16))
  g_variables = init(reference[0], z)
  low_variables = jax.eval_shape(low[0].init, jax.random.key(0), z)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(low_variables))
  images = forward(low[0], g_variables, z)
  assert images.dtype == jnp.float32
  np.testing.assert_allclose(images, forward(reference[0], g_variables, z), atol=0.1)
  d_variables = init(reference[1], images)
  logits = forward(low[1], d_variables, images)
  assert logits.dtype == jnp.float32 and logits.shape == (8,)
  expected = forward(reference[1], d_variables, images)
  np.testing.assert_allclose(logits, expected, atol=0.05 * float(jnp.abs(expected).max()) + 1e-3)


def leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(
      state.replace(key=jax.random.key_data(state.key)))]


def test_eight_devices_match_one_device():
  """Synchronised batch norm in G, spectral norm in D: 8 devices == 1 on the same batches."""
  assert jax.device_count() == 8
  # DiffAugment draws per device (docs/options.md), so it is off here.
  gan = family.bundle(tiny_resnet_config(augment__policy=""))
  step_fn = make_train_step(gan)
  rng = np.random.RandomState(0)
  batches = [rng.randint(0, 256, (16, 16, 16, 3), np.uint8) for _ in range(2)]
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    runner = parallel.DataParallel(step_fn, "shard_map", parallel.make_mesh(devices))
    state = runner.put_state(jax.jit(lambda key: create_state(gan, key))(jax.random.key(0)))
    key = runner.put_state(jax.random.key(3))
    for batch in batches:
      state, metrics = runner.step(state, runner.put_batch(batch), key)
    results.append((leaves(runner.get_state(state)), runner.get_metrics(metrics)))
  (one_state, one_metrics), (eight_state, eight_metrics) = results
  # The 8 devices' partial sums add in another order: equal up to float32 rounding.
  for a, b in zip(one_state, eight_state):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
  for name, value in eight_metrics.items():
    assert abs(value - one_metrics[name]) < 1e-5, name


def learning_config(faces_dir):
  """resnet32's recipe at 16 px for a few hundred steps: larger rates, no DiffAugment (which
  slows D's start), a shorter EMA."""
  config = tiny_resnet_config(train__batch_size=32, optim__g_lr=1e-3, optim__d_lr=2e-3,
                              augment__policy="", train__ema_decay=0.99)
  config.data.path, config.data.limit = str(faces_dir), 2000
  config.train.num_steps = LEARN_STEPS
  config.checkpoint_every, config.sample_every, config.log_every = LEARN_STEPS // 2, LEARN_STEPS, 50
  return config


@pytest.fixture(scope="module")
def learned_run(faces_dir, faces16, tmp_path_factory):
  """(workdir, pixel Fréchet distance at init, after LEARN_STEPS) of a run saved halfway too."""
  config = learning_config(faces_dir)
  gan = family.bundle(config)
  # The state training starts from (compiled once: train_and_evaluate reuses the program).
  initial = pixel_frechet(gan, train.initial_state(gan, config.seed), faces16)
  workdir = tmp_path_factory.mktemp("resnet_run")
  final = pixel_frechet(gan, train.train_and_evaluate(config, str(workdir)), faces16)
  print(f"pixel Fréchet distance: {initial:.2f} at init -> {final:.2f} after {LEARN_STEPS} steps")
  return workdir, initial, final


@pytest.mark.slow
def test_learns_real_faces(learned_run):
  """Pixel-space Fréchet distance to real faces at least halves from initialisation."""
  workdir, initial, final = learned_run
  assert final <= 0.5 * initial
  assert (workdir / "samples" / f"step_{LEARN_STEPS:07d}.png").is_file()


@pytest.mark.slow
def test_resume_from_halfway_is_exact(learned_run, faces_dir, tmp_path):
  workdir, _, _ = learned_run
  resumed = tmp_path / "run"
  shutil.copytree(workdir / "checkpoints", resumed / "checkpoints")
  shutil.rmtree(resumed / "checkpoints" / str(LEARN_STEPS))  # as if stopped halfway
  assert checkpoint.restore_tree(resumed)[0] == LEARN_STEPS // 2
  train.train_and_evaluate(learning_config(faces_dir), str(resumed))
  expected_step, expected = checkpoint.restore_tree(workdir)
  step, tree = checkpoint.restore_tree(resumed)
  assert step == expected_step == LEARN_STEPS
  assert checkpoint.fingerprint(tree) == checkpoint.fingerprint(expected)
