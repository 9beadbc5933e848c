"""The StyleGAN2 networks (gan_jax/models/stylegan2.py): shapes, the image range, weight
demodulation, the mapping network's learning-rate multiplier, truncation, noise, how many
w vectors synthesis takes, and check()'s refusals.

Networks are a few channels wide and compiled as few times as possible (XLA's compiles
are most of a CPU test's time): one jitted program initialises G and D at 32 px and runs
every G variant the tests compare; the other sizes are traced (jax.eval_shape) only.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gan_jax.config import defaults
from gan_jax.errors import ConfigError
from gan_jax.models import fused_conv, stylegan2

LATENT = 8
W_DIM = 16
BATCH = 8


def tiny_config(resolution=32, **model_options):
  """A StyleGAN2 config a CPU builds in seconds; `model_options` set config.model.<name>."""
  config = defaults.get_config()
  config.data.resolution = resolution
  model = config.model
  model.name, model.latent_dim, model.width = "stylegan2", LATENT, 4
  model.g_batch_norm = model.d_batch_norm = False
  model.d_minibatch_std = True
  with config.unlocked():
    model.w_dim, model.mapping_layers, model.channel_max = W_DIM, 2, 16
    for name, value in model_options.items():
      model[name] = value
  config.train.conv_dtype = ""
  return config


def latents(n=BATCH, seed=0):
  return jax.random.normal(jax.random.key(seed), (n, LATENT))


@pytest.mark.parametrize("architecture", ["skip", "resnet"])
@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_shapes(resolution, architecture):
  config = tiny_config(resolution, style_architecture=architecture)
  stylegan2.check(config)
  generator, discriminator = stylegan2.build(config)
  z, images = jnp.zeros((2, LATENT)), jnp.zeros((2, resolution, resolution, 3))
  g_variables = jax.eval_shape(generator.init, jax.random.key(0), z)
  assert set(g_variables) == {"params"}  # no batch norm statistics, nothing else
  fake = jax.eval_shape(lambda v: generator.apply(v, z, train=True), g_variables)
  assert (fake.shape, fake.dtype) == ((2, resolution, resolution, 3), jnp.float32)
  d_variables = jax.eval_shape(discriminator.init, jax.random.key(0), images)
  assert set(d_variables) == {"params"}
  logits = jax.eval_shape(lambda v: discriminator.apply(v, images, train=True), d_variables)
  assert (logits.shape, logits.dtype) == ((2,), jnp.float32)

  synthesis = g_variables["params"]["synthesis_network"]
  doublings = int(np.log2(resolution // 4))
  sizes = [4 * 2 ** i for i in range(doublings + 1)]
  # Channels: width (4) at the output resolution, doubling per halving, capped at 16.
  assert synthesis["const"].shape == (4, 4, 16)
  assert synthesis[f"b{resolution}_conv0"]["kernel"].shape == (3, 3, 8, 4)
  assert synthesis[f"b{resolution}_conv1"]["kernel"].shape == (3, 3, 4, 4)
  to_rgb = sorted(name for name in synthesis if name.endswith("_torgb"))
  if architecture == "skip":
    assert to_rgb == sorted(f"b{size}_torgb" for size in sizes)
  else:
    assert to_rgb == [f"b{resolution}_torgb"]
  blocks = sorted(name for name in d_variables["params"] if name[1:].isdigit())
  assert blocks == sorted(f"b{size}" for size in sizes[1:])  # one residual block per halving
  assert d_variables["params"]["b4_conv"]["kernel"].shape == (3, 3, 17, 16)  # + minibatch std


def test_bfloat16_computes_in_bfloat16_and_answers_in_float32():
  config = tiny_config()
  config.train.dtype = "bfloat16"
  generator, discriminator = stylegan2.build(config)
  z, images = jnp.zeros((4, LATENT)), jnp.zeros((4, 32, 32, 3))
  g_variables = jax.eval_shape(generator.init, jax.random.key(0), z)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(g_variables))
  assert jax.eval_shape(lambda v: generator.apply(v, z), g_variables).dtype == jnp.float32
  d_variables = jax.eval_shape(discriminator.init, jax.random.key(0), images)
  assert jax.eval_shape(lambda v: discriminator.apply(v, images), d_variables).dtype == jnp.float32


def slot_variants(ws, key):
  """ws (N, num_ws, w_dim) followed by num_ws copies of it, copy k with vector k replaced."""
  n, count, _ = ws.shape
  others = jax.random.normal(key, ws.shape)
  copies = [ws.at[:, k].set(others[:, k]) for k in range(count)]
  return jnp.concatenate([ws, *copies])


def changed_by_each_slot(images, num_ws):
  """For each w vector: whether replacing it changed the images of slot_variants."""
  images = np.asarray(images).reshape(num_ws + 1, -1)
  return [not np.allclose(images[k + 1], images[0], atol=1e-6) for k in range(num_ws)]


@pytest.fixture(scope="module")
def networks32():
  """G and D at 32 px, initialised, and G's images under every setting the tests compare,
  from one compiled program. Noise strengths are set to 0.5 (they start at 0, where noise
  changes nothing) so that the noise settings differ."""
  generator, discriminator = stylegan2.build(tiny_config(conv_impl="lax"))
  z = latents()
  ws = jax.random.normal(jax.random.key(4), (2, generator.num_ws, W_DIM))

  @jax.jit
  def run(key):
    g_variables = generator.init(key, z)
    g_variables = flax.traverse_util.path_aware_map(
        lambda path, x: jnp.full_like(x, 0.5) if path[-1] == "noise_strength" else x,
        g_variables)
    w_avg = jnp.mean(generator.apply(g_variables, latents(256, seed=7), method="mapping"), 0)

    def images(noise_key=None, **kwargs):
      rngs = {} if noise_key is None else {"noise": noise_key}
      return generator.apply(g_variables, z, train=True, rngs=rngs, **kwargs)

    key_a, key_b = jax.random.split(jax.random.key(3))
    out = {
        "plain": images(),                                   # no noise stream: zeros
        "none": images(key_a, noise_mode="none"),
        "noise_a": images(key_a),
        "noise_a_again": images(key_a, noise_mode="random"),
        "noise_b": images(key_b),
        "psi0": images(key_a, truncation_psi=0.0, w_avg=w_avg, noise_mode="none"),
        "psi0_noise": images(key_a, truncation_psi=0.0, w_avg=w_avg),
        "psi_half": images(truncation_psi=0.5, w_avg=w_avg),
        "slots": generator.apply(g_variables, slot_variants(ws, jax.random.key(9)),
                                 method="synthesis"),
    }
    d_variables = discriminator.init(jax.random.key(1), out["plain"])
    logits = discriminator.apply(d_variables, out["noise_a"], train=True)
    return g_variables, d_variables, w_avg, out, logits

  g_variables, d_variables, w_avg, out, logits = run(jax.random.key(0))
  return generator, discriminator, g_variables, d_variables, w_avg, jax.device_get(out), logits


def test_generator_images_are_in_range_and_vary(networks32):
  *_, out, logits = networks32
  images = out["noise_a"]
  assert images.shape == (BATCH, 32, 32, 3) and images.dtype == np.float32
  assert np.all(np.abs(images) <= 1.0) and images.std() > 0.05
  assert not np.allclose(images[0], images[1])  # different z, different faces
  assert logits.shape == (BATCH,) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits)) and np.ptp(np.asarray(logits)) > 0


def test_noise_comes_from_the_noise_stream_only(networks32):
  *_, out, _ = networks32
  np.testing.assert_array_equal(out["plain"], out["none"])  # no stream given: no noise
  np.testing.assert_array_equal(out["noise_a"], out["noise_a_again"])  # auto == random
  assert not np.allclose(out["noise_a"], out["none"], atol=1e-3)
  assert not np.allclose(out["noise_a"], out["noise_b"], atol=1e-3)


def test_random_noise_without_a_stream_is_refused(networks32):
  generator, _, g_variables, *_ = networks32
  with pytest.raises(ValueError, match="rngs=\\{'noise': key\\}"):
    jax.eval_shape(lambda v: generator.apply(v, latents(), noise_mode="random"), g_variables)
  with pytest.raises(ValueError, match="noise_mode='const'"):
    jax.eval_shape(lambda v: generator.apply(v, latents(), noise_mode="const"), g_variables)


def test_truncation(networks32):
  generator, _, g_variables, _, _, out, _ = networks32
  psi0 = out["psi0"]
  # psi = 0: every z maps to w_avg, and without noise every image is the same.
  for image in psi0[1:]:
    np.testing.assert_allclose(image, psi0[0], atol=1e-6)
  assert not np.allclose(out["psi0_noise"][0], out["psi0_noise"][1], atol=1e-3)  # noise differs
  with pytest.raises(ValueError, match="pass w_avg"):
    jax.eval_shape(lambda v: generator.apply(v, latents(), truncation_psi=0.5), g_variables)
  # psi = 0.5: images closer to the average image than the untruncated ones.
  spread = lambda images: np.mean(np.square(images - psi0[0]))
  assert spread(out["psi_half"]) < spread(out["plain"])


def test_num_ws_is_what_synthesis_consumes(networks32):
  generator, _, g_variables, _, w_avg, out, _ = networks32
  assert [stylegan2.num_ws(r) for r in (32, 64, 128)] == [8, 10, 12]
  assert generator.num_ws == 8
  assert all(changed_by_each_slot(out["slots"], generator.num_ws))  # every w is used
  synthesize = lambda ws: generator.apply(g_variables, ws, method="synthesis")
  assert jax.eval_shape(synthesize, w_avg[None]).shape == (1, 32, 32, 3)  # one w for all
  for wrong in (generator.num_ws - 1, generator.num_ws + 1):
    with pytest.raises(ValueError, match="takes ws of shape \\(N, 8, w_dim\\)"):
      jax.eval_shape(synthesize, jnp.zeros((2, wrong, W_DIM)))


def test_resnet_architecture_consumes_every_w_too():
  generator, _ = stylegan2.build(tiny_config(style_architecture="resnet", conv_impl="lax"))
  ws = jax.random.normal(jax.random.key(4), (2, generator.num_ws, W_DIM))

  @jax.jit
  def slots(key):
    variables = generator.init(key, latents(2))
    return generator.apply(variables, slot_variants(ws, jax.random.key(9)), method="synthesis")

  assert all(changed_by_each_slot(slots(jax.random.key(0)), generator.num_ws))


def per_image_modulated_conv(x, kernel, styles, demodulate, upsample):
  """The paper's form: each image convolved with its own modulated (and demodulated) kernel."""
  def one(x, s):
    w = kernel * s[None, None, :, None]
    if demodulate:
      w = w * lax.rsqrt(jnp.sum(jnp.square(w), axis=(0, 1, 2), keepdims=True) + 1e-8)
    x = fused_conv.upsample2x(x[None]) if upsample else x[None]
    return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=lax.Precision.HIGHEST)[0]
  return jax.vmap(one)(x, styles)


def test_demodulation_keeps_unit_variance():
  keys = jax.random.split(jax.random.key(5), 4)
  x = jax.random.normal(keys[0], (4, 24, 24, 32))
  # Kernels and styles of arbitrary scales: per output channel, per image and input channel.
  kernel = jax.random.normal(keys[1], (3, 3, 32, 16)) * jnp.exp(jax.random.normal(keys[2], (16,)))
  styles = 3.0 * jnp.exp(jax.random.normal(keys[3], (4, 32)))

  @jax.jit
  def convolve(x, kernel, styles):
    ours, reference = {}, {}
    for upsample in (False, True):
      for demodulate in (False, True):
        ours[upsample, demodulate] = stylegan2.modulated_conv(
            x, kernel, styles, demodulate, resample="upsample_before" if upsample else None,
            impl="lax")
        reference[upsample, demodulate] = per_image_modulated_conv(x, kernel, styles, demodulate,
                                                                   upsample)
    return ours, reference

  ours, reference = jax.device_get(convolve(x, kernel, styles))
  interior = lambda y: y[:, 1:-1, 1:-1]  # zero padding lowers the border's variance
  demodulated, plain = interior(ours[False, True]), interior(ours[False, False])
  assert abs(demodulated.var() - 1.0) < 0.05
  # Per image and output channel (484 pixels each).
  assert np.all(np.abs(demodulated.var(axis=(1, 2)) - 1.0) < 0.3)
  assert plain.var() > 10  # without demodulation the scales come through
  # The same values as the per-image kernels of the paper, with and without upsampling.
  for form, expected in reference.items():
    np.testing.assert_allclose(ours[form], expected, atol=2e-5 * np.abs(expected).max(), rtol=0,
                               err_msg=f"(upsample, demodulate) = {form}")


def test_mapping_learning_rate_multiplier():
  fan_in, lr_mul = 512, 0.01
  x = jax.random.normal(jax.random.key(6), (4, fan_in))
  layer = stylegan2.EqualDense(256, lr_multiplier=lr_mul, bias_init=0.5)
  z = latents(16)
  # Two mapping networks computing the same function (raw parameters rescaled) get raw
  # gradients in the ratio of their multipliers.
  slow, fast = (stylegan2.MappingNetwork(W_DIM, 3, m) for m in (0.01, 1.0))
  loss = lambda net: lambda p: jnp.sum(jnp.sin(net.apply({"params": p}, z)))

  @jax.jit
  def run():
    params = layer.init(jax.random.key(7), x)["params"]
    slow_params = slow.init(jax.random.key(8), z)["params"]
    fast_params = jax.tree_util.tree_map(lambda p: p * 0.01, slow_params)
    return (params, layer.apply({"params": params}, x),
            slow.apply({"params": slow_params}, z), fast.apply({"params": fast_params}, z),
            jax.grad(loss(slow))(slow_params), jax.grad(loss(fast))(fast_params))

  params, y, slow_w, fast_w, slow_grads, fast_grads = jax.device_get(run())
  kernel, bias = params["kernel"], params["bias"]
  assert abs(kernel.std() * lr_mul - 1.0) < 0.02  # raw weights N(0, 1 / lr_mul)
  np.testing.assert_allclose(bias * lr_mul, 0.5, rtol=1e-6)  # the effective bias is bias_init
  expected = np.asarray(x) @ (kernel * lr_mul / np.sqrt(fan_in)) + bias * lr_mul
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(slow_w, fast_w, rtol=1e-4, atol=1e-5)
  fast_grads = flax.traverse_util.flatten_dict(fast_grads)
  for path, grad in flax.traverse_util.flatten_dict(slow_grads).items():
    assert np.abs(fast_grads[path]).max() > 0, path
    np.testing.assert_allclose(grad, 0.01 * fast_grads[path], rtol=1e-3, atol=1e-7,
                               err_msg=str(path))


def test_build_reads_the_family_options():
  generator, discriminator = stylegan2.build(tiny_config(mapping_lr_multiplier=0.05))
  assert (generator.w_dim, generator.mapping_layers, generator.mapping_lr_multiplier,
          generator.architecture, generator.channel_max) == (W_DIM, 2, 0.05, "skip", 16)
  assert discriminator.channel_max == 16 and discriminator.minibatch_std_group == 4
  # The defaults (config/defaults.py) are the paper's values.
  config = defaults.get_config()
  assert stylegan2.options(config) == stylegan2.PAPER == {
      "w_dim": 512, "mapping_layers": 8, "mapping_lr_multiplier": 0.01,
      "style_architecture": "skip", "channel_max": 512}


@pytest.mark.parametrize("resolution", [16, 48, 256])
def test_check_refuses_other_resolutions(resolution):
  with pytest.raises(ConfigError) as error:
    stylegan2.check(tiny_config(resolution))
  message = str(error.value)
  assert "\n" not in message and f"data.resolution={resolution}" in message
  assert "--config.data.resolution" in message


def test_check_refuses_batch_norm_in_one_line():
  config = tiny_config()
  config.model.g_batch_norm = config.model.d_batch_norm = True
  with pytest.raises(ConfigError) as error:
    stylegan2.check(config)
  message = str(error.value)
  assert "\n" not in message and message.count("--config.") == 2
  assert "--config.model.g_batch_norm=False" in message
  assert "--config.model.d_batch_norm=False" in message


def test_check_names_every_flag_of_a_default_config_in_one_line():
  config = defaults.get_config()
  config.model.name = "stylegan2"
  with pytest.raises(ConfigError) as error:
    stylegan2.check(config)
  message = str(error.value)
  assert "\n" not in message
  assert [flag for flag in message.split() if flag.startswith("--config.")] == [
      "--config.model.g_batch_norm=False", "--config.model.d_batch_norm=False",
      "--config.model.d_minibatch_std=True"]


@pytest.mark.parametrize("overrides, fix", [
    ({"d_spectral_norm": True}, "--config.model.d_spectral_norm=False"),
    ({"d_dropout": 0.2}, "--config.model.d_dropout=0"),
    ({"d_final_size": 8}, "--config.model.d_final_size=0"),
    ({"conv_impl": "im2col_rgb"}, "--config.model.conv_impl=auto"),
    ({"style_architecture": "orig"}, "--config.model.style_architecture=skip"),
    ({"mapping_lr_multiplier": 0.0}, "--config.model.mapping_lr_multiplier=0.01"),
    ({"mapping_layers": 0}, "--config.model.mapping_layers=8"),
    ({"w_dim": 0}, "--config.model.w_dim=512"),
    ({"channel_max": 0}, "--config.model.channel_max=512"),
])
def test_check_refuses_what_it_cannot_build(overrides, fix):
  with pytest.raises(ConfigError) as error:
    stylegan2.check(tiny_config(**overrides))
  message = str(error.value)
  assert "\n" not in message and fix in message and message.count("--config.") == 1
