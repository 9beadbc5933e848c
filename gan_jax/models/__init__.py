"""Generator and discriminator models, built from a config."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from gan_jax.models.dcgan import Discriminator, Generator

__all__ = ["Discriminator", "Generator", "build_models"]


def build_models(config: ml_collections.ConfigDict) -> tuple[Generator, Discriminator]:
  """The (generator, discriminator) pair that `config.model` describes."""
  model, resolution = config.model, config.data.resolution
  if model.name != "dcgan":
    raise ValueError(f"unknown model.name {model.name!r}; available: dcgan")
  dtype = jnp.dtype(config.train.dtype)
  conv_impl = model.get("conv_impl", "auto")
  conv_dtype = jnp.dtype(config.train.conv_dtype) if config.train.get("conv_dtype") else None
  generator = Generator(resolution=resolution, width=model.g_width or model.width,
                        batch_norm=model.g_batch_norm, dtype=dtype, conv_impl=conv_impl,
                        conv_dtype=conv_dtype)
  discriminator = Discriminator(resolution=resolution, width=model.d_width or model.width,
                                batch_norm=model.d_batch_norm, final_size=model.d_final_size,
                                dropout=model.d_dropout,
                                spectral_norm=model.d_spectral_norm, dtype=dtype,
                                conv_impl=conv_impl, conv_dtype=conv_dtype)
  return generator, discriminator
