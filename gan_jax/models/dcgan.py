"""DCGAN generator and discriminator (Radford et al. 2016) for square faces.

The generator projects z to a small square (4x4, or 9x9 for 36 px faces), then
doubles it with stride-2 transposed convolutions until it reaches the output
resolution; the discriminator mirrors it with stride-2 convolutions and ends in
one dense logit. Width halves (G) or doubles (D) at every step, as in the paper.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import fast_conv
from gan_jax.models import layers

# The DCGAN paper's initialisation: every weight from N(0, 0.02).
dcgan_init = nn.initializers.normal(stddev=0.02)


def start_size(resolution: int) -> int:
  """Side of the first feature map: 9 for 36 px (9 -> 18 -> 36), else 4."""
  return 9 if resolution % 9 == 0 else 4


def num_upsamplings(resolution: int) -> int:
  """How many times the start size doubles to reach `resolution`."""
  start = start_size(resolution)
  steps = math.log2(resolution / start) if resolution >= start else -1
  if steps < 1 or steps != int(steps):
    raise ValueError(f"data.resolution={resolution} is not 4 or 9 times a power of two >= 2 "
                     "(use 8, 16, 32, 36, 64, 128, ...)")
  return int(steps)


def num_downsamplings(resolution: int, final_size: int = 0) -> int:
  """How many times D halves `resolution` to reach `final_size` (0: G's start size)."""
  final, size, steps = final_size or start_size(resolution), resolution, 0
  while size > final and size % 2 == 0:  # an odd side cannot halve
    size, steps = size // 2, steps + 1
  if size != final:
    raise ValueError(f"model.d_final_size={final} is not reachable by halving data.resolution="
                     f"{resolution}; use one of its halvings, e.g. {start_size(resolution)}")
  return steps


class Generator(nn.Module):
  """z (N, latent_dim) -> images (N, resolution, resolution, 3) in [-1, 1]."""
  resolution: int = 64
  width: int = 64          # channels of the last hidden layer; doubles towards z
  batch_norm: bool = True
  dtype: Any = jnp.float32  # computation dtype; params stay float32
  conv_impl: str = "auto"   # fast_conv.IMPLS
  conv_dtype: Any = None    # operand dtype of the convolutions' products (None: dtype)
  axis_name: str | None = None  # mapped axis whose devices share batch-norm statistics

  @nn.compact
  def __call__(self, z: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    size, steps = start_size(self.resolution), num_upsamplings(self.resolution)
    channels = self.width * 2 ** (steps - 1)
    # A dense projection equals the paper's 4x4 "valid" transposed conv on a 1x1 input.
    x = nn.Dense(size * size * channels, use_bias=not self.batch_norm, kernel_init=dcgan_init,
                 dtype=self.dtype, name="project")(z.astype(self.dtype))
    x = x.reshape(z.shape[0], size, size, channels)
    for i in range(steps):
      if self.batch_norm:
        x = layers.batch_norm(train, self.dtype, self.axis_name, name=f"bn{i}")(x)
      x = nn.relu(x)
      last = i == steps - 1
      channels = 3 if last else channels // 2
      # nn.ConvTranspose(channels, (4, 4), strides=(2, 2), padding="SAME"), fast on CPU too.
      x = fast_conv.ConvTranspose2x(channels, use_bias=last or not self.batch_norm,
                                    kernel_init=dcgan_init, dtype=self.dtype,
                                    impl=self.conv_impl, operand_dtype=self.conv_dtype,
                                    name=f"up{i}")(x)
    return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
  """images (N, H, W, 3) in [-1, 1] -> one logit per image (N,)."""
  resolution: int = 64
  width: int = 64           # channels of the first conv; doubles at every step
  batch_norm: bool = True   # on every conv but the first, as in the paper
  final_size: int = 0       # feature-map side before the dense logit; 0 = G's start size
  dropout: float = 0.0
  spectral_norm: bool = False  # normalise every layer's weights by their top singular value
  minibatch_std: int = 0    # group size of the minibatch-std channel before the logit; 0 = off
  dtype: Any = jnp.float32
  conv_impl: str = "auto"   # fast_conv.IMPLS
  conv_dtype: Any = None    # operand dtype of the convolutions' products (None: dtype)
  axis_name: str | None = None  # mapped axis whose devices share batch-norm statistics

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = True, features: int = 0):
    """Logits (N,); with `features` = k >= 1, (logits, the activations (N, h, w, c) of the k-th
    last conv block): the hidden layer a VAE-GAN measures reconstructions in."""
    def apply(layer: nn.Module, x: jnp.ndarray) -> jnp.ndarray:
      return layers.spectral_norm(layer, x, train) if self.spectral_norm else layer(x)

    if x.shape[1:] != (self.resolution, self.resolution, 3):
      raise ValueError(f"discriminator for {self.resolution} px got images of shape {x.shape[1:]}")
    x = x.astype(self.dtype)
    channels = self.width
    num_blocks = num_downsamplings(self.resolution, self.final_size)
    for i in range(num_blocks):
      x = apply(nn.Conv(channels, (4, 4), strides=(2, 2), padding="SAME",
                        use_bias=i == 0 or not self.batch_norm, kernel_init=dcgan_init,
                        dtype=self.dtype, name=f"down{i}",
                        conv_general_dilated=functools.partial(
                            fast_conv.conv_general_dilated, impl=self.conv_impl,
                            operand_dtype=self.conv_dtype)), x)
      if i > 0 and self.batch_norm:
        x = layers.batch_norm(train, self.dtype, self.axis_name, name=f"bn{i}")(x)
      x = nn.leaky_relu(x, 0.2)
      if i == num_blocks - features:
        hidden = x
      if self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      channels *= 2
    if self.minibatch_std:  # how much the images of a group differ, as one more channel
      x = layers.minibatch_std(x, self.minibatch_std)
    x = x.reshape(x.shape[0], -1)
    logit = apply(nn.Dense(1, kernel_init=dcgan_init, dtype=self.dtype, name="logit"), x)
    logit = logit[:, 0].astype(jnp.float32)
    return (logit, hidden.astype(jnp.float32)) if features else logit


def check(config: ml_collections.ConfigDict) -> None:
  """Raise ConfigError for model options this family cannot build (before anything compiles)."""
  model = config.model
  if not 0.0 <= model.d_dropout < 1.0:
    raise ConfigError(f"model.d_dropout={model.d_dropout} must be in [0, 1)")
  if model.d_minibatch_std and model.d_minibatch_std_group < 1:
    raise ConfigError(f"model.d_minibatch_std_group={model.d_minibatch_std_group} must be >= 1 "
                      "(StyleGAN uses 4)")
  if model.conv_impl not in fast_conv.IMPLS:
    raise ConfigError(f"model.conv_impl={model.conv_impl!r} is not one of "
                      f"{', '.join(fast_conv.IMPLS)}")
  try:  # the sizes G and D can be built for
    num_upsamplings(config.data.resolution)
    num_downsamplings(config.data.resolution, model.d_final_size)
  except ValueError as error:
    raise ConfigError(str(error)) from None


def build(config: ml_collections.ConfigDict, axis_name: str | None = None
          ) -> tuple[Generator, Discriminator]:
  """The (generator, discriminator) pair that `config.model` describes.

  `axis_name`: the mapped axis the trainer runs the step under; batch norm
  averages its statistics over it (None: no cross-device averaging).
  """
  model, resolution = config.model, config.data.resolution
  dtype, conv_dtype = layers.precision(config)
  conv_impl = model.conv_impl
  generator = Generator(resolution=resolution, width=model.g_width or model.width,
                        batch_norm=model.g_batch_norm, dtype=dtype, conv_impl=conv_impl,
                        conv_dtype=conv_dtype, axis_name=axis_name)
  discriminator = Discriminator(resolution=resolution, width=model.d_width or model.width,
                                batch_norm=model.d_batch_norm, final_size=model.d_final_size,
                                dropout=model.d_dropout,
                                spectral_norm=model.d_spectral_norm,
                                minibatch_std=(model.d_minibatch_std_group
                                               if model.d_minibatch_std else 0),
                                dtype=dtype,
                                conv_impl=conv_impl, conv_dtype=conv_dtype, axis_name=axis_name)
  return generator, discriminator
