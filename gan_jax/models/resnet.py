"""Residual generator and discriminator (SNGAN, Miyato et al. 2018; BigGAN's widths).

G projects z to a 4x4 map, then doubles it with residual up-blocks
(BN -> ReLU -> 2x nearest upsampling -> 3x3 conv -> BN -> ReLU -> 3x3 conv,
plus a 1x1-conv shortcut), and ends in BN -> ReLU -> 3x3 conv -> tanh. D halves
the image with residual down-blocks (ReLU -> 3x3 conv -> ReLU -> 3x3 conv ->
2x2 average pooling, plus a 1x1-conv shortcut; the first block without the
leading ReLU, SNGAN's "optimized block"), adds one block at 4x4 that keeps the
size (as SNGAN's and BigGAN's discriminators do), then ReLU, a sum over the
positions and a dense logit. Every convolution and dense layer of D is spectrally
normalised; D has no batch norm, so its output for an image does not depend on
the rest of the batch (gradient penalties are per-example).

Widths: `width` is the channels of G's last block and D's first, as in the DCGAN
family; the other blocks multiply it by the per-resolution factors below.
16 px (two blocks each way) exists for fast tests and smoke runs.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import fused_conv, layers

START_SIZE = 4
# Channels / width of G's 4x4 map and after each up-block (one block per doubling):
# constant at 16 and 32 px (SNGAN's CIFAR networks), BigGAN's halving ladders above.
G_MULTIPLIERS = {16: (1, 1, 1), 32: (1, 1, 1, 1), 64: (16, 8, 4, 2, 1),
                 128: (16, 16, 8, 4, 2, 1)}
# Channels / width after each of D's down-blocks, then of its last block (at 4x4).
D_MULTIPLIERS = {16: (1, 1, 1), 32: (1, 1, 1, 1), 64: (1, 2, 4, 8, 16),
                 128: (1, 2, 4, 8, 16, 16)}
RESOLUTIONS = tuple(sorted(G_MULTIPLIERS))
# bench's FLOPs: those of XLA's plain convolutions, not of the folded CPU forms, which
# compute the same outputs with fewer products (models/fused_conv.py).
COUNTED_CONV_IMPL = "lax"

# SNGAN's initialisation (Glorot uniform) for every weight.
resnet_init = nn.initializers.xavier_uniform()


upsample2x, pool2x = fused_conv.upsample2x, fused_conv.pool2x


def conv_layer(features: int, size: int, name: str, *, use_bias: bool = True,
               resample: str | None = None, dtype: Any = jnp.float32, conv_dtype: Any = None,
               conv_impl: str = "auto") -> fused_conv.Conv:
  """A SAME stride-1 convolution with nn.Conv's parameters, [upsample ->] conv [-> pool],
  computed as `conv_impl` says (fused_conv.IMPLS), the products' operands in `conv_dtype`
  (None: the computation dtype) summed in float32 (train.conv_dtype)."""
  return fused_conv.Conv(features, size, use_bias=use_bias, resample=resample,
                         kernel_init=resnet_init, dtype=dtype, impl=conv_impl,
                         operand_dtype=conv_dtype, name=name)


class UpBlock(nn.Module):
  """(N, H, W, C) -> (N, 2H, 2W, features): BN, ReLU, upsample, conv, BN, ReLU, conv + shortcut."""
  features: int
  batch_norm: bool = True
  dtype: Any = jnp.float32
  conv_dtype: Any = None
  axis_name: str | None = None
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    def conv(features, size, use_bias, name, resample=None):
      return conv_layer(features, size, name, use_bias=use_bias, resample=resample,
                        dtype=self.dtype, conv_dtype=self.conv_dtype, conv_impl=self.conv_impl)

    def norm_relu(h, name):
      if self.batch_norm:
        h = layers.batch_norm(train, self.dtype, self.axis_name, name=name)(h)
      return nn.relu(h)

    # Upsampling, then conv0 (BN's shift is its bias).
    h = conv(self.features, 3, not self.batch_norm, "conv0", "upsample_before")(norm_relu(x, "bn0"))
    # The block's output feeds the next batch norm (the next block's bn0 or G's bn_out),
    # whose shift is the bias: biases here would get only rounding noise as gradients,
    # which Adam scales up to full-size steps.
    h = conv(self.features, 3, not self.batch_norm, "conv1")(norm_relu(h, "bn1"))
    # A 1x1 conv commutes with nearest upsampling: convolve the small map, 4x cheaper.
    return h + upsample2x(conv(self.features, 1, not self.batch_norm, "shortcut")(x))


class DownBlock(nn.Module):
  """(N, H, W, C) -> (N, H/2, W/2, features), or the same size without `downsample`."""
  features: int
  first: bool = False       # SNGAN's optimized block: no ReLU on the input image
  downsample: bool = True
  dtype: Any = jnp.float32
  conv_dtype: Any = None
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    def conv(features, size, name, resample=None):
      return conv_layer(features, size, name, resample=resample, dtype=self.dtype,
                        conv_dtype=self.conv_dtype, conv_impl=self.conv_impl)

    h = x if self.first else nn.relu(x)
    h = layers.spectral_norm(conv(self.features, 3, "conv0"), h, train)
    # conv1, then pooling when the block downsamples.
    h = layers.spectral_norm(conv(self.features, 3, "conv1", "pool_after" if self.downsample else None),
                 nn.relu(h), train)
    shortcut = x
    if self.downsample:
      shortcut = pool2x(x)  # pooling before the 1x1 conv: the same, 4x cheaper
    if self.downsample or x.shape[-1] != self.features:
      shortcut = layers.spectral_norm(conv(self.features, 1, "shortcut"), shortcut, train)
    return h + shortcut


def num_blocks(resolution: int) -> int:
  """Up-blocks of G (= down-blocks of D) from 4x4 to `resolution`."""
  return len(G_MULTIPLIERS[resolution]) - 1


class Generator(nn.Module):
  """z (N, latent_dim) -> images (N, resolution, resolution, 3) in [-1, 1]."""
  resolution: int = 32
  width: int = 128         # channels of the last up-block; G_MULTIPLIERS for the others
  batch_norm: bool = True
  dtype: Any = jnp.float32  # computation dtype; params stay float32
  conv_dtype: Any = None    # operand dtype of the convolutions' products (None: dtype)
  axis_name: str | None = None  # mapped axis whose devices share batch-norm statistics
  conv_impl: str = "auto"   # fused_conv.IMPLS

  @nn.compact
  def __call__(self, z: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    channels = [self.width * m for m in G_MULTIPLIERS[self.resolution]]
    x = nn.Dense(START_SIZE * START_SIZE * channels[0], kernel_init=resnet_init,
                 dtype=self.dtype, name="project")(z.astype(self.dtype))
    x = x.reshape(z.shape[0], START_SIZE, START_SIZE, channels[0])
    for i, features in enumerate(channels[1:]):
      x = UpBlock(features, self.batch_norm, self.dtype, self.conv_dtype, self.axis_name,
                  self.conv_impl, name=f"up{i}")(x, train)
    if self.batch_norm:
      x = layers.batch_norm(train, self.dtype, self.axis_name, name="bn_out")(x)
    x = conv_layer(3, 3, "to_rgb", dtype=self.dtype, conv_dtype=self.conv_dtype,
                   conv_impl=self.conv_impl)(nn.relu(x))
    return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
  """images (N, resolution, resolution, 3) in [-1, 1] -> one logit per image (N,)."""
  resolution: int = 32
  width: int = 128          # channels of the first down-block; D_MULTIPLIERS for the others
  dtype: Any = jnp.float32
  conv_dtype: Any = None
  conv_impl: str = "auto"   # fused_conv.IMPLS

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    if x.shape[1:] != (self.resolution, self.resolution, 3):
      raise ValueError(f"discriminator for {self.resolution} px got images of shape {x.shape[1:]}")
    x = x.astype(self.dtype)
    multipliers = D_MULTIPLIERS[self.resolution]
    for i, multiplier in enumerate(multipliers):
      x = DownBlock(self.width * multiplier, first=i == 0, downsample=i < len(multipliers) - 1,
                    dtype=self.dtype, conv_dtype=self.conv_dtype, conv_impl=self.conv_impl,
                    name=f"down{i}")(x, train)
    features = jnp.sum(nn.relu(x), axis=(1, 2))  # global sum pooling (SNGAN)
    logit = layers.spectral_norm(nn.Dense(1, kernel_init=resnet_init, dtype=self.dtype, name="logit"),
                     features, train)
    return logit[:, 0].astype(jnp.float32)


def check(config: ml_collections.ConfigDict) -> None:
  """Raise ConfigError, in one line, for options this family cannot build."""
  model, resolution = config.model, config.data.resolution
  if resolution not in G_MULTIPLIERS:
    raise ConfigError(f"model.name=resnet builds 32, 64 and 128 px faces (16 px for tests), not "
                      f"data.resolution={resolution}; set --config.data.resolution to one of them")
  # Every setting it does not take, with its fix, in one line: --config.model.name=resnet
  # on a DCGAN config then needs one more try, not four.
  conv_impl = model.conv_impl
  settings = [
      (model.d_batch_norm, "model.d_batch_norm=True (its D has no batch norm)",
       "--config.model.d_batch_norm=False"),
      (not model.d_spectral_norm,
       "model.d_spectral_norm=False (every layer of its D is spectrally normalised)",
       "--config.model.d_spectral_norm=True"),
      (model.d_dropout != 0, f"model.d_dropout={model.d_dropout} (its D has no dropout)",
       "--config.model.d_dropout=0"),
      (model.d_final_size != 0,
       f"model.d_final_size={model.d_final_size} (its D sums over the 4x4 positions)",
       "--config.model.d_final_size=0"),
      (model.d_minibatch_std,
       "model.d_minibatch_std=True (its D has no minibatch-std channel)",
       "--config.model.d_minibatch_std=False"),
      (conv_impl not in fused_conv.IMPLS,
       f"model.conv_impl={conv_impl} (its convolutions take {', '.join(fused_conv.IMPLS)})",
       "--config.model.conv_impl=auto"),
  ]
  refused = [(setting, fix) for wrong, setting, fix in settings if wrong]
  if refused:
    raise ConfigError(f"model.name=resnet does not take {', '.join(s for s, _ in refused)}; "
                      f"set {' '.join(fix for _, fix in refused)} (configs/resnet32.py does)")


def build(config: ml_collections.ConfigDict, axis_name: str | None = None
          ) -> tuple[Generator, Discriminator]:
  """The (generator, discriminator) pair that `config.model` describes.

  `axis_name`: the mapped axis the trainer runs the step under; G's batch norm
  averages its statistics over it (None: no cross-device averaging).
  """
  model, resolution = config.model, config.data.resolution
  dtype, conv_dtype = layers.precision(config)
  generator = Generator(resolution=resolution, width=model.g_width or model.width,
                        batch_norm=model.g_batch_norm, dtype=dtype, conv_dtype=conv_dtype,
                        axis_name=axis_name, conv_impl=model.conv_impl)
  discriminator = Discriminator(resolution=resolution, width=model.d_width or model.width,
                                dtype=dtype, conv_dtype=conv_dtype, conv_impl=model.conv_impl)
  return generator, discriminator
