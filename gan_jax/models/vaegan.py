"""VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric").

Three networks: an encoder E(x) -> (mean, log-variance) of q(z|x), DCGAN's
generator as the decoder, and DCGAN's discriminator, one of whose conv blocks
(`Discriminator(..., features=k)`) is the hidden layer in which reconstructions
are compared. The encoder mirrors the discriminator: stride-2 convolutions
down to G's start size (4, or 9 at 36 px), then one dense layer to
2 * latent_dim numbers.

`build` returns (generator, discriminator) like every family; the trainer's
VAE-GAN bundle (training/vaegan.py) adds `build_encoder` and asks D for the
features of block `model.feature_block` (counted from the last; 2: 8x8 at 32
and 64 px, as the paper's 8x8x256 at 64 px).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from gan_jax.errors import ConfigError
from gan_jax.models import dcgan, fast_conv, layers


class Encoder(nn.Module):
  """images (N, R, R, 3) in [-1, 1] -> (mean, log_variance) of q(z|x), (N, latent_dim) each."""
  resolution: int = 64
  latent_dim: int = 100
  width: int = 64           # channels of the first conv; doubles at every step
  batch_norm: bool = True   # on every conv but the first, as in D
  dtype: Any = jnp.float32
  conv_impl: str = "auto"   # fast_conv.IMPLS
  conv_dtype: Any = None    # operand dtype of the convolutions' products (None: dtype)
  axis_name: str | None = None  # mapped axis whose devices share batch-norm statistics

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = True) -> tuple[jnp.ndarray, jnp.ndarray]:
    if x.shape[1:] != (self.resolution, self.resolution, 3):
      raise ValueError(f"encoder for {self.resolution} px got images of shape {x.shape[1:]}")
    x = x.astype(self.dtype)
    channels = self.width
    for i in range(dcgan.num_downsamplings(self.resolution)):
      x = nn.Conv(channels, (4, 4), strides=(2, 2), padding="SAME",
                  use_bias=i == 0 or not self.batch_norm, kernel_init=dcgan.dcgan_init,
                  dtype=self.dtype, name=f"down{i}",
                  conv_general_dilated=functools.partial(
                      fast_conv.conv_general_dilated, impl=self.conv_impl,
                      operand_dtype=self.conv_dtype))(x)
      if i > 0 and self.batch_norm:
        x = layers.batch_norm(train, self.dtype, self.axis_name, name=f"bn{i}")(x)
      x = nn.leaky_relu(x, 0.2)
      channels *= 2
    x = x.reshape(x.shape[0], -1)
    # The posterior's statistics in float32 whatever the computation dtype: exp(log_variance).
    stats = nn.Dense(2 * self.latent_dim, kernel_init=dcgan.dcgan_init, dtype=self.dtype,
                     name="posterior")(x).astype(jnp.float32)
    mean, log_variance = jnp.split(stats, 2, axis=-1)
    return mean, log_variance


def check(config: ml_collections.ConfigDict) -> None:
  """DCGAN's checks, plus what the VAE-GAN's step cannot do."""
  dcgan.check(config)
  model, loss = config.model, config.loss
  if model.e_width < 0:
    raise ConfigError(f"model.e_width={model.e_width} must be >= 0 (0 = model.width)")
  blocks = dcgan.num_downsamplings(config.data.resolution, model.d_final_size)
  if not 1 <= model.feature_block <= blocks:
    raise ConfigError(f"model.feature_block={model.feature_block} must be in [1, {blocks}]: D has "
                      f"{blocks} conv blocks at {config.data.resolution} px (1 = the last)")
  if loss.kl_weight < 0 or loss.recon_weight < 0:
    raise ConfigError(f"loss.kl_weight={loss.kl_weight} and loss.recon_weight="
                      f"{loss.recon_weight} must be >= 0")
  # The VAE-GAN step (training/vaegan_step.py) updates E, G and D once each, together, with
  # one batch of fakes made of reconstructions and prior samples. (The techniques its step
  # cannot run are refused by training/family.py.)
  refused = {"loss.name=wgan-gp": loss.name == "wgan-gp", "loss.flip_prob": loss.flip_prob,
             "train.d_steps": config.train.d_steps != 1,
             "train.g_steps": config.train.g_steps != 1}
  for option, used in refused.items():
    if used:
      raise ConfigError(f"model.name=vaegan does not train with {option}; use its default "
                        "(or model.name=dcgan)")


def build(config: ml_collections.ConfigDict, axis_name: str | None = None):
  """DCGAN's (generator, discriminator): the decoder, and D with its feature layer."""
  return dcgan.build(config, axis_name)


def build_encoder(config: ml_collections.ConfigDict, axis_name: str | None = None) -> Encoder:
  """The encoder `config.model` describes (width model.e_width, or model.width when 0)."""
  model = config.model
  dtype, conv_dtype = layers.precision(config)
  return Encoder(resolution=config.data.resolution, latent_dim=model.latent_dim,
                 width=model.e_width or model.width, batch_norm=model.d_batch_norm,
                 dtype=dtype, conv_impl=model.conv_impl, conv_dtype=conv_dtype,
                 axis_name=axis_name)
