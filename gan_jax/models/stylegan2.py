"""StyleGAN2 generator and discriminator (Karras et al. 2020, "Analyzing and Improving
the Image Quality of StyleGAN"), at 32, 64 and 128 px.

G is a mapping network and a synthesis network:

- mapping: z, normalised by its second moment (z / sqrt(mean(z^2))), through
  `mapping_layers` dense layers (leaky ReLU 0.2) to w (`w_dim`). Its layers have an
  equalised learning rate with a multiplier (`mapping_lr_multiplier`, the paper's
  0.01): the raw weights start N(0, 1 / lr_mul) and are used as raw * lr_mul /
  sqrt(fan_in), the biases as raw * lr_mul, so Adam's steps on them are lr_mul times
  smaller in effect.
- synthesis: a learned 4x4 constant; one modulated 3x3 conv at 4x4, then per doubling
  two (the first after nearest 2x upsampling; the paper's transposed conv with a
  [1, 3, 3, 1] filter is not used); after each, per-pixel noise times a learned
  per-channel strength (starting at 0; stylegan2-ada-pytorch learns one strength per
  layer), a bias and leaky ReLU 0.2 times sqrt(2). A style (an affine map of w, bias
  1) scales each conv's input channels; weight demodulation then divides each output
  channel by the norm its modulated kernel would have, so unit-variance inputs give
  unit-variance outputs. Both are done on the activations, not the weights ("scaling
  the input and the output", `modulated_conv`): x * s -> conv with the shared kernel ->
  * 1 / sqrt(sum_{i,k} (s_i w_ik)^2 + 1e-8), the same values as the paper's grouped
  convolution with per-image kernels, with one ordinary (batched) convolution.
- `style_architecture`: "skip" (the paper's G): a modulated 1x1 toRGB (no
  demodulation) at every resolution, the RGB images summed upward, each upsampled 2x
  bilinearly (the [1, 3, 3, 1] filter, edges replicated); "resnet": a 2x-upsampled 1x1
  shortcut around each doubling's two convs, summed times 1/sqrt(2), one toRGB at the
  end.

The synthesis network takes one w per style it applies (`num_ws`, 2 log2(resolution)
- 2: one per conv and the last toRGB; a toRGB shares its w with the next resolution's
first conv, as in stylegan2-ada-pytorch), so style mixing and W+ projection can feed
it different ones. Its images pass through tanh, as the other families', so fakes are
in D's input range [-1, 1] (the paper's G output is linear and clipped for display).

D (the paper's residual D): a 1x1 fromRGB, then per halving a residual block (3x3
conv, 3x3 conv, 2x2 average pooling; shortcut: pooling, then a 1x1 conv without bias;
summed times 1/sqrt(2)), then at 4x4 a minibatch-std channel (layers.minibatch_std,
`model.d_minibatch_std_group`), a 3x3 conv, a dense layer and a dense logit. Every
layer of both networks has the equalised learning rate (weights N(0, 1) used times
1/sqrt(fan_in)) and leaky ReLU 0.2 times sqrt(2). Nothing in either depends on the
rest of the batch but D's minibatch-std channel; there is no batch norm.

Widths: `model.width` (or g_width / d_width) is the channels at the output
resolution; they double per halving up to `channel_max` (the paper's channel_base /
resolution capped at 512 is width = 32768 / resolution).

Noise: `noise_mode` "auto" (the default) draws it from the 'noise' rng stream when the
call has one (apply(..., rngs={"noise": key})) and uses zeros when it has not (as in
`init` and in a plain `apply(variables, z, train=...)`); "random" requires the stream;
"none" uses zeros.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import fused_conv, layers
from gan_jax.models.style_layers import (SHORTCUT_GAIN, EqualConv, EqualDense, lrelu,
                                         modulated_conv, normalize_2nd_moment,
                                         upsample2x_smooth)

RESOLUTIONS = (32, 64, 128)
START_SIZE = 4
ARCHITECTURES = ("skip", "resnet")
NOISE_MODES = ("auto", "random", "none")
# The options this family reads beyond those every family has, with the paper's values
# (config/defaults.py holds their defaults for small CPU models).
PAPER = {
    "w_dim": 512,                   # size of w (and of the mapping network's hidden layers)
    "mapping_layers": 8,            # dense layers from z to w
    "mapping_lr_multiplier": 0.01,  # learning-rate multiplier of the mapping network
    "style_architecture": "skip",   # G: skip (toRGB per resolution, summed) | resnet
    "channel_max": 512,             # cap on the channels of any layer of G and D
}
# bench's FLOPs: those of XLA's plain convolutions, not of fused_conv's folded CPU forms.
COUNTED_CONV_IMPL = "lax"

def options(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """This family's own options (the names of PAPER) as `config.model` sets them."""
  return {name: config.model[name] for name in PAPER}


def channels(resolution: int, size: int, width: int, channel_max: int) -> int:
  """Channels of the layers at side `size` in a network for `resolution`: `width` at the
  output resolution, doubling per halving, at most `channel_max`."""
  return min(width * (resolution // size), channel_max)


def num_ws(resolution: int) -> int:
  """How many w vectors the synthesis network for `resolution` consumes: one per
  modulated conv (1 at 4x4, 2 per doubling) and one for the last toRGB."""
  return 2 * int(math.log2(resolution)) - 2


class MappingNetwork(nn.Module):
  """z (N, latent_dim) -> w (N, w_dim): second-moment normalisation, `layers` equalised dense
  layers with leaky ReLU, learning rate times `lr_multiplier`. Computed in float32."""
  w_dim: int = 512
  layers: int = 8
  lr_multiplier: float = 0.01

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    x = normalize_2nd_moment(z.astype(jnp.float32))
    for i in range(self.layers):
      x = EqualDense(self.w_dim, self.lr_multiplier, activation=True, name=f"dense{i}")(x)
    return x


class SynthesisLayer(nn.Module):
  """A modulated, demodulated 3x3 conv [after 2x upsampling], noise, bias, leaky ReLU."""
  features: int
  upsample: bool = False
  dtype: Any = jnp.float32
  operand_dtype: Any = None
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, noise_mode: str) -> jax.Array:
    styles = EqualDense(x.shape[-1], bias_init=1.0, name="affine")(w)
    kernel = self.param("kernel", nn.initializers.normal(stddev=1.0),
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    # No 1/sqrt(fan_in) gain on the kernel: demodulation divides any scale out.
    y = modulated_conv(x.astype(self.dtype), kernel, styles, demodulate=True,
                       resample="upsample_before" if self.upsample else None, impl=self.impl,
                       operand_dtype=self.operand_dtype)
    strength = self.param("noise_strength", nn.initializers.zeros_init(), (self.features,),
                          jnp.float32)
    noise = _noise(self, noise_mode, y.shape[:3])
    if noise is not None:
      y = y + (noise[..., None] * strength).astype(y.dtype)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return lrelu(y + bias.astype(y.dtype))


def _noise(module: nn.Module, noise_mode: str, shape: tuple[int, ...]) -> jax.Array | None:
  """Per-pixel N(0, 1) noise (N, H, W) from `module`'s 'noise' rng stream, or None (zeros)."""
  if noise_mode not in NOISE_MODES:
    raise ValueError(f"noise_mode={noise_mode!r} is not one of {', '.join(NOISE_MODES)}")
  if noise_mode == "none" or (noise_mode == "auto" and not module.has_rng("noise")):
    return None
  if not module.has_rng("noise"):
    raise ValueError("noise_mode='random' draws the noise from the 'noise' rng stream: pass "
                     "rngs={'noise': key} to apply (or noise_mode='none')")
  return jax.random.normal(module.make_rng("noise"), shape, jnp.float32)


class ToRGB(nn.Module):
  """Modulated 1x1 conv to RGB (no demodulation; the style carries the 1/sqrt(in) gain), bias."""
  dtype: Any = jnp.float32
  operand_dtype: Any = None
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
    styles = EqualDense(x.shape[-1], bias_init=1.0, name="affine")(w) / math.sqrt(x.shape[-1])
    kernel = self.param("kernel", nn.initializers.normal(stddev=1.0), (1, 1, x.shape[-1], 3),
                        jnp.float32)
    y = modulated_conv(x.astype(self.dtype), kernel, styles, demodulate=False, impl=self.impl,
                       operand_dtype=self.operand_dtype)
    bias = self.param("bias", nn.initializers.zeros_init(), (3,), jnp.float32)
    return y.astype(jnp.float32) + bias


class SynthesisNetwork(nn.Module):
  """ws (N, num_ws, w_dim), or one w (N, w_dim) for all layers -> images (N, R, R, 3) in [-1, 1]."""
  resolution: int = 32
  width: int = 32
  channel_max: int = 512
  architecture: str = "skip"
  dtype: Any = jnp.float32
  operand_dtype: Any = None
  impl: str = "auto"

  @property
  def num_ws(self) -> int:
    return num_ws(self.resolution)

  @nn.compact
  def __call__(self, ws: jax.Array, noise_mode: str = "auto") -> jax.Array:
    if self.architecture not in ARCHITECTURES:
      raise ValueError(f"architecture {self.architecture!r} is not one of {ARCHITECTURES}")
    if ws.ndim == 2:
      ws = jnp.broadcast_to(ws[:, None, :], (ws.shape[0], self.num_ws, ws.shape[1]))
    if ws.ndim != 3 or ws.shape[1] != self.num_ws:
      raise ValueError(f"the {self.resolution} px synthesis network takes ws of shape "
                       f"(N, {self.num_ws}, w_dim) or (N, w_dim), not {ws.shape}")
    width = lambda size: channels(self.resolution, size, self.width, self.channel_max)
    kwargs = dict(dtype=self.dtype, operand_dtype=self.operand_dtype, impl=self.impl)
    skip = self.architecture == "skip"

    const = self.param("const", nn.initializers.normal(stddev=1.0),
                       (START_SIZE, START_SIZE, width(START_SIZE)), jnp.float32)
    x = jnp.broadcast_to(const.astype(self.dtype), (ws.shape[0], *const.shape))
    x = SynthesisLayer(width(START_SIZE), name="b4_conv1", **kwargs)(x, ws[:, 0], noise_mode)
    image = ToRGB(name="b4_torgb", **kwargs)(x, ws[:, 1]) if skip else None
    w_index, size = 1, START_SIZE
    while size < self.resolution:
      size *= 2
      features = width(size)
      shortcut = None
      if not skip:  # resnet: a 1x1 conv (no bias, no activation) of the upsampled input
        shortcut = EqualConv(features, 1, use_bias=False, activation=False, name=f"b{size}_skip",
                             **kwargs)(fused_conv.upsample2x(x))
      x = SynthesisLayer(features, upsample=True, name=f"b{size}_conv0", **kwargs)(
          x, ws[:, w_index], noise_mode)
      x = SynthesisLayer(features, name=f"b{size}_conv1", **kwargs)(
          x, ws[:, w_index + 1], noise_mode)
      if shortcut is not None:
        x = (x + shortcut) * jnp.asarray(SHORTCUT_GAIN, x.dtype)
      w_index += 2
      if skip:
        image = upsample2x_smooth(image) + ToRGB(name=f"b{size}_torgb", **kwargs)(
            x, ws[:, w_index])
    if not skip:
      image = ToRGB(name=f"b{size}_torgb", **kwargs)(x, ws[:, w_index])
    return jnp.tanh(image.astype(jnp.float32))


class Generator(nn.Module):
  """z (N, latent_dim) -> images (N, resolution, resolution, 3) in [-1, 1].

  Methods (call them with `generator.apply(variables, ..., method=...)`):
    mapping(z)                     -> w (N, w_dim)
    synthesis(ws, noise_mode)      -> images; ws (N, num_ws, w_dim) or (N, w_dim)
    __call__(z, train, truncation_psi, w_avg, noise_mode)
  `num_ws` (an attribute): how many w vectors synthesis takes.
  """
  resolution: int = 32
  width: int = 32            # channels at the output resolution, doubling per halving
  channel_max: int = 512
  w_dim: int = 512
  mapping_layers: int = 8
  mapping_lr_multiplier: float = 0.01
  architecture: str = "skip"  # ARCHITECTURES
  dtype: Any = jnp.float32     # synthesis computation dtype; mapping and params float32
  conv_dtype: Any = None       # operand dtype of the convolutions' products (None: dtype)
  conv_impl: str = "auto"      # fused_conv.IMPLS

  @property
  def num_ws(self) -> int:
    return num_ws(self.resolution)

  def setup(self):
    self.mapping_network = MappingNetwork(self.w_dim, self.mapping_layers,
                                          self.mapping_lr_multiplier)
    self.synthesis_network = SynthesisNetwork(self.resolution, self.width, self.channel_max,
                                              self.architecture, self.dtype, self.conv_dtype,
                                              self.conv_impl)

  def mapping(self, z: jax.Array) -> jax.Array:
    """z (N, latent_dim) -> w (N, w_dim), float32."""
    return self.mapping_network(z)

  def synthesis(self, ws: jax.Array, noise_mode: str = "auto") -> jax.Array:
    """ws (N, num_ws, w_dim), or (N, w_dim) for every layer -> images (N, R, R, 3) in [-1, 1]."""
    return self.synthesis_network(ws, noise_mode)

  def __call__(self, z: jax.Array, train: bool = True, truncation_psi: float = 1.0,
               w_avg: jax.Array | None = None, noise_mode: str = "auto") -> jax.Array:
    """Images of latents z. With `w_avg` (w_dim,), w is truncated to w_avg + psi (w - w_avg).
    `train` changes nothing (no batch norm, no dropout): the families' common signature."""
    del train
    if w_avg is None and isinstance(truncation_psi, (int, float)) and truncation_psi != 1:
      raise ValueError(f"truncation_psi={truncation_psi} truncates towards w_avg: pass w_avg "
                       "(the mean of mapping(z) over many z)")
    w = self.mapping(z)
    if w_avg is not None:
      w_avg = jnp.asarray(w_avg, jnp.float32)
      w = w_avg + truncation_psi * (w - w_avg)
    return self.synthesis(w, noise_mode)


class DiscriminatorBlock(nn.Module):
  """(N, H, W, C) -> (N, H/2, W/2, features): 3x3 conv, 3x3 conv then 2x2 pooling, plus a
  pooled 1x1-conv shortcut, the sum times 1/sqrt(2)."""
  features: int
  dtype: Any = jnp.float32
  operand_dtype: Any = None
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kwargs = dict(dtype=self.dtype, operand_dtype=self.operand_dtype, impl=self.impl)
    # Pooling before the 1x1 conv: the same values, 4x fewer products.
    shortcut = EqualConv(self.features, 1, use_bias=False, activation=False, name="skip",
                         **kwargs)(fused_conv.pool2x(x))
    h = EqualConv(x.shape[-1], 3, name="conv0", **kwargs)(x)
    h = EqualConv(self.features, 3, resample="pool_after", name="conv1", **kwargs)(h)
    return (h + shortcut) * jnp.asarray(SHORTCUT_GAIN, h.dtype)


class Discriminator(nn.Module):
  """images (N, resolution, resolution, 3) in [-1, 1] -> one logit per image (N,)."""
  resolution: int = 32
  width: int = 32            # channels at the input resolution, doubling per halving
  channel_max: int = 512
  minibatch_std_group: int = 4
  dtype: Any = jnp.float32
  conv_dtype: Any = None
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    del train  # nothing in D differs between training and evaluation
    if x.shape[1:] != (self.resolution, self.resolution, 3):
      raise ValueError(f"discriminator for {self.resolution} px got images of shape {x.shape[1:]}")
    width = lambda size: channels(self.resolution, size, self.width, self.channel_max)
    kwargs = dict(dtype=self.dtype, operand_dtype=self.conv_dtype, impl=self.conv_impl)
    x = EqualConv(width(self.resolution), 1, name="from_rgb", **kwargs)(x.astype(self.dtype))
    size = self.resolution
    while size > START_SIZE:
      x = DiscriminatorBlock(width(size // 2), name=f"b{size}", **kwargs)(x)
      size //= 2
    x = layers.minibatch_std(x, self.minibatch_std_group)
    x = EqualConv(width(START_SIZE), 3, name="b4_conv", **kwargs)(x)
    x = EqualDense(width(START_SIZE), activation=True, name="b4_dense")(x.reshape(x.shape[0], -1))
    return EqualDense(1, name="logit")(x)[:, 0]


def check(config: ml_collections.ConfigDict) -> None:
  """Raise ConfigError, in one line, for options this family cannot build."""
  model, resolution = config.model, config.data.resolution
  if resolution not in RESOLUTIONS:
    raise ConfigError(f"model.name=stylegan2 builds 32, 64 and 128 px faces, not "
                      f"data.resolution={resolution}; set --config.data.resolution to one of them")
  own = options(config)
  settings = [
      (model.g_batch_norm, "model.g_batch_norm=True (its G has no batch norm)",
       "--config.model.g_batch_norm=False"),
      (model.d_batch_norm, "model.d_batch_norm=True (its D has no batch norm)",
       "--config.model.d_batch_norm=False"),
      (model.d_spectral_norm, "model.d_spectral_norm=True (its D has the equalised learning "
       "rate, no spectral norm)", "--config.model.d_spectral_norm=False"),
      (model.d_dropout != 0, f"model.d_dropout={model.d_dropout} (its D has no dropout)",
       "--config.model.d_dropout=0"),
      (model.d_final_size != 0,
       f"model.d_final_size={model.d_final_size} (its D ends at 4x4)",
       "--config.model.d_final_size=0"),
      (not model.d_minibatch_std,
       "model.d_minibatch_std=False (its D always has the minibatch-std channel)",
       "--config.model.d_minibatch_std=True"),
      (model.d_minibatch_std_group < 1,
       f"model.d_minibatch_std_group={model.d_minibatch_std_group} (at least 1; StyleGAN2: 4)",
       "--config.model.d_minibatch_std_group=4"),
      (model.conv_impl not in fused_conv.IMPLS,
       f"model.conv_impl={model.conv_impl} (its convolutions take {', '.join(fused_conv.IMPLS)})",
       "--config.model.conv_impl=auto"),
      (own["w_dim"] < 1, f"model.w_dim={own['w_dim']} (at least 1)",
       f"--config.model.w_dim={PAPER['w_dim']}"),
      (own["mapping_layers"] < 1, f"model.mapping_layers={own['mapping_layers']} (at least 1)",
       f"--config.model.mapping_layers={PAPER['mapping_layers']}"),
      (not own["mapping_lr_multiplier"] > 0,
       f"model.mapping_lr_multiplier={own['mapping_lr_multiplier']} (must be > 0)",
       f"--config.model.mapping_lr_multiplier={PAPER['mapping_lr_multiplier']}"),
      (own["style_architecture"] not in ARCHITECTURES,
       f"model.style_architecture={own['style_architecture']} (its G is skip or resnet)",
       f"--config.model.style_architecture={PAPER['style_architecture']}"),
      (own["channel_max"] < 1, f"model.channel_max={own['channel_max']} (at least 1)",
       f"--config.model.channel_max={PAPER['channel_max']}"),
  ]
  refused = [(setting, fix) for wrong, setting, fix in settings if wrong]
  if refused:
    raise ConfigError(f"model.name=stylegan2 does not take {', '.join(s for s, _ in refused)}; "
                      f"set {' '.join(fix for _, fix in refused)}")


def build(config: ml_collections.ConfigDict, axis_name: str | None = None
          ) -> tuple[Generator, Discriminator]:
  """The (generator, discriminator) pair that `config.model` describes. `axis_name` is
  unused: nothing in these networks averages over devices (no batch norm)."""
  del axis_name
  model, resolution = config.model, config.data.resolution
  own = options(config)
  dtype, conv_dtype = layers.precision(config)
  generator = Generator(resolution=resolution, width=model.g_width or model.width,
                        channel_max=own["channel_max"], w_dim=own["w_dim"],
                        mapping_layers=own["mapping_layers"],
                        mapping_lr_multiplier=own["mapping_lr_multiplier"],
                        architecture=own["style_architecture"], dtype=dtype,
                        conv_dtype=conv_dtype, conv_impl=model.conv_impl)
  discriminator = Discriminator(resolution=resolution, width=model.d_width or model.width,
                                channel_max=own["channel_max"],
                                minibatch_std_group=model.d_minibatch_std_group, dtype=dtype,
                                conv_dtype=conv_dtype, conv_impl=model.conv_impl)
  return generator, discriminator
