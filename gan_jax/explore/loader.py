"""The one loader of a trained model: `load(workdir, step)` -> `TrainedGAN`.

`load` reads only the arrays sampling needs (G's weights and batch statistics,
the EMA of G's weights when the run kept one, and D's or a VAE-GAN encoder's
when asked; never the optimiser states) and returns a `TrainedGAN`: the one object `generate`,
`interpolate`, `project`, `nearest` and `evaluate run` sample from. Which of
G's weights and batch statistics to sample with is `GAN.sampling_variables`'
choice (the EMA when there is one, with re-estimated statistics under
`train.ema_batch_stats=recompute`); a TrainedGAN computes it once per state.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from gan_jax import checkpoint
from gan_jax import images as image_lib
from gan_jax.training import family
from gan_jax.training.state import GANState
from gan_jax.training.gan import GAN
from gan_jax.errors import CheckpointError, ExploreError

# The state fields sampling reads, and those the discriminator's features add.
GENERATOR_FIELDS = ("g_params", "g_batch_stats", "ema_g_params")
DISCRIMINATOR_FIELDS = ("d_params", "d_batch_stats")
ENCODER_FIELDS = ("e_params", "e_batch_stats")  # a VAE-GAN's (model.name=vaegan)


def partial_state(state_class: type[GANState] = GANState, **fields) -> GANState:
  """A `state_class` (the family's: a VAEGANState with encoder fields) holding only
  `fields`, the rest None: enough for `GAN.sample` (and `VAEGAN.encode`)."""
  values = {f.name: None for f in dataclasses.fields(state_class)}
  values.update(fields)
  return state_class(**values)


def conv_features(module: nn.Module, variables: dict, images: jax.Array) -> list[jax.Array]:
  """The outputs of every convolution of `module` (in inference mode), in call order."""
  _, captured = module.apply(variables, images, train=False,
                             capture_intermediates=lambda m, _: isinstance(m, nn.Conv),
                             mutable=["intermediates"])
  return [outputs[0] for outputs in _leaves_in_order(captured["intermediates"])]


def _leaves_in_order(tree) -> list:
  # Intermediates are recorded in call order; each module's outputs sit under
  # its '__call__' key (a tuple with one entry per call).
  found = []
  for name, value in tree.items():
    if name == "__call__":
      found.append(value)
    elif hasattr(value, "items"):
      found.extend(_leaves_in_order(value))
  return found


class TrainedGAN:
  """A generator (and optionally discriminator) restored from a checkpoint, ready to run."""

  def __init__(self, config: ml_collections.ConfigDict, gan: GAN, state: GANState, step: int):
    self.config, self.gan, self.state, self.step = config, gan, state, step
    self._sampling_variables = jax.jit(gan.sampling_variables)
    self._sample = jax.jit(gan.sample_with)
    self._features = jax.jit(self._discriminator_features)
    self._encode = jax.jit(gan.encode) if family.of(gan.model_name).has_encoder else None

  @property
  def state(self) -> GANState:
    return self._state

  @state.setter
  def state(self, state: GANState) -> None:
    # A new state (the periodic FID's next evaluation) gets its own sampling variables.
    self._state, self._variables = state, None

  @property
  def sampling_variables(self) -> dict:
    """G's variables `GAN.sampling_variables` picks for this state, computed at first use."""
    if self._variables is None:
      # Concrete arrays even when first asked for inside a trace (project's jitted step).
      with jax.ensure_compile_time_eval():
        self._variables = self._sampling_variables(self._state)
    return self._variables

  @property
  def latent_dim(self) -> int:
    return self.gan.latent_dim

  @property
  def resolution(self) -> int:
    return self.gan.resolution

  @property
  def has_encoder(self) -> bool:
    """Whether the encoder was loaded (`load(..., encoder=True)` of a VAE-GAN run)."""
    return getattr(self.state, "e_params", None) is not None

  def encode(self, images, batch_size: int = 64) -> np.ndarray:
    """The encoder's mean latents (N, latent_dim) of uint8 or [-1, 1] images (a VAE-GAN's)."""
    if not self.has_encoder:
      raise ExploreError("the encoder was not loaded; use load(..., encoder=True)")
    images = np.asarray(image_lib.to_float(images), np.float32)
    return _batched(lambda chunk: self._encode(self.state, chunk)[0], images, batch_size)

  @property
  def uses_ema(self) -> bool:
    """Whether `sample` uses the EMA of G's weights (GAN.sample does when there is one)."""
    return self.state.ema_g_params is not None

  def sample(self, z: jax.Array) -> jax.Array:
    """Images in [-1, 1] for a batch of latents (traceable: usable under grad)."""
    return self.gan.sample_with(self.sampling_variables, z)

  def generate(self, z, batch_size: int = 64) -> np.ndarray:
    """Float32 images in [-1, 1] for latents z (N, latent_dim), `batch_size` at a time.

    Every batch is padded to `batch_size`, so image i depends only on z[i]
    (and one compiled shape serves any N).
    """
    z = np.asarray(z, np.float32).reshape(-1, self.latent_dim)
    variables = self.sampling_variables
    return _batched(lambda chunk: self._sample(variables, chunk), z, batch_size)

  def _discriminator_features(self, images: jax.Array) -> list[jax.Array]:
    variables = {"params": self.state.d_params, "batch_stats": self.state.d_batch_stats}
    return conv_features(self.gan.discriminator, variables, images)

  def discriminator_features(self, images: jax.Array) -> list[jax.Array]:
    """D's convolution outputs for images in [-1, 1] (traceable)."""
    if self.state.d_params is None:
      raise ExploreError("the discriminator was not loaded; use load(..., discriminator=True)")
    return self._discriminator_features(images)

  def embed(self, images, batch_size: int = 256) -> np.ndarray:
    """D's last convolution features, flattened and L2-normalised: (N, F) float32."""
    if self.state.d_params is None:
      raise ExploreError("the discriminator was not loaded; use load(..., discriminator=True)")
    images = image_lib.to_float(images)
    features = _batched(lambda chunk: self._features(chunk)[-1], images, batch_size)
    features = features.reshape(len(features), -1)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def _batched(fn: Callable[[jax.Array], jax.Array], inputs: np.ndarray, batch_size: int
             ) -> np.ndarray:
  outputs = []
  for start in range(0, len(inputs), batch_size):
    chunk = inputs[start:start + batch_size]
    padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk),) + chunk.shape[1:],
                                             chunk.dtype)])
    outputs.append(np.asarray(jax.device_get(fn(padded)))[:len(chunk)])
  return np.concatenate(outputs)


def load(workdir: str | os.PathLike, step: int | None = None, discriminator: bool = False,
         ema_batch_stats: str | None = None, encoder: bool | None = False) -> TrainedGAN:
  """The trained G of `workdir` (latest readable step by default), plus D and E if asked.

  `encoder`: True loads a VAE-GAN's encoder (CheckpointError for a run without one),
  None loads it when the run has one.

  `ema_batch_stats` ('live' | 'recompute') replaces the run's
  train.ema_batch_stats: which batch statistics the EMA generator samples with.

  Only those networks' arrays are read (an Orbax partial restore, checked
  against the model the saved config builds), onto this process's first
  device. No checkpoint, or no such step: CheckpointError saying what to do.
  """
  manager = checkpoint.make_manager(workdir, read_only=True)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def restore_one(candidate: int):
    config = ml_collections.ConfigDict(checkpoint.restore_config(manager, candidate))
    if ema_batch_stats is not None:
      config.train.ema_batch_stats = ema_batch_stats
    has_encoder = family.of(config).has_encoder
    if encoder and not has_encoder:
      raise CheckpointError(
          f"the run in {workdir} (model.name={config.model.name}) has no encoder; use the "
          "--workdir of a model.name=vaegan run (configs/vaegan32.py)")
    gan = family.bundle(config)
    names = GENERATOR_FIELDS + (DISCRIMINATOR_FIELDS if discriminator else ()) + (
        ENCODER_FIELDS if has_encoder and encoder is not False else ())
    full = checkpoint.state_to_tree_abstract(checkpoint.abstract_state(gan, config, device))
    # Fields without arrays (no EMA, no batch norm) stay as create_state makes them.
    absent = {name: full[name] for name in names if not jax.tree.leaves(full[name])}
    wanted = {name: full[name] for name in names if name not in absent}
    checkpoint.check_fits(manager, candidate, wanted, partial=True)
    restored = checkpoint.restore_state_item(manager, candidate, wanted, partial=True)["state"]
    return config, gan, {**absent, **{name: restored[name] for name in wanted}}

  try:
    # The latest step unless asked for another, and only that one: a damaged checkpoint is an
    # error here, never a quiet switch to an older generator.
    step = checkpoint.saved_steps(manager, step)[0]
    step, (config, gan, fields) = checkpoint.restore_with_fallback(manager, step, restore_one)
  finally:
    manager.close()
  return TrainedGAN(config, gan, partial_state(family.state_class(config.model.name), **fields),
                    step)


def describe(model: TrainedGAN, workdir) -> str:
  weights = "EMA generator" if model.uses_ema else "generator"
  if (model.uses_ema and model.gan.ema_batch_stats == "recompute"
      and jax.tree.leaves(model.state.g_batch_stats)):
    weights += " with its own batch statistics"
  return (f"{workdir}: step {model.step}, {weights}, {model.resolution} px, "
          f"latent_dim {model.latent_dim}" + (", encoder" if model.has_encoder else ""))
