"""A trained generator (and, when asked, its discriminator) loaded from a checkpoint.

`load(workdir, step)` reads only the arrays sampling needs (no optimiser
state) and returns a `TrainedGAN`: the one object `generate`, `interpolate`,
`project`, `nearest` and `evaluate run` sample from.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from gan_jax import checkpoint
from gan_jax import images as image_lib
from gan_jax.training.state import GANState
from gan_jax.training.gan import GAN
from gan_jax.errors import ExploreError

DISCRIMINATOR_FIELDS = ("d_params", "d_batch_stats")



# --- loading ---------------------------------------------------------------------------------


def checkpoint_step(workdir: str | os.PathLike, step: int | None = None) -> int:
  """`step` if the run saved it, else (None) the run's latest step; ExploreError otherwise."""
  directory = pathlib.Path(workdir).absolute() / checkpoint.CHECKPOINT_DIR
  if not directory.is_dir():
    raise ExploreError(f"no checkpoints in {directory}; train first with "
                       f"`python -m gan_jax.main --config ... --workdir {workdir}`")
  manager = checkpoint.make_manager(workdir, read_only=True)
  steps = sorted(manager.all_steps())
  manager.close()
  if not steps:
    raise ExploreError(f"no finished checkpoint in {directory}; train (longer) first")
  if step is None:
    return steps[-1]
  if step not in steps:
    raise ExploreError(f"no checkpoint for step {step} in {directory}; "
                       f"available steps: {', '.join(map(str, steps))}")
  return step


def restore_fields(workdir: str | os.PathLike, fields: Sequence[str], step: int,
                   device: jax.Device | None = None) -> dict[str, Any]:
  """{field: arrays} for the chosen GANState fields of one checkpoint, as saved.

  Only those fields are read (an Orbax partial restore guided by the saved
  metadata; no optimiser state), onto `device` (default: the first device),
  whatever sharding the run saved them with. A field saved as None comes back None.
  """
  manager = checkpoint.make_manager(workdir, read_only=True)
  sharding = jax.sharding.SingleDeviceSharding(device or jax.local_devices()[0])
  stored = manager.item_metadata(step)["state"]
  stored = getattr(stored, "tree", stored)
  missing = [name for name in fields if name not in stored]
  if missing:
    raise ExploreError(f"checkpoint step {step} in {manager.directory} has no {', '.join(missing)}")
  present = {name: stored[name] for name in fields if stored[name] is not None}
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                        present)
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
      item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True)))["state"]
  manager.close()
  return {name: restored.get(name) for name in fields}


def partial_state(**fields) -> GANState:
  """A GANState holding only `fields` (the rest None): enough for `GAN.sample`."""
  values = {f.name: None for f in dataclasses.fields(GANState)}
  values.update(fields)
  return GANState(**values)


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
    self._sample = jax.jit(gan.sample)
    self._features = jax.jit(self._discriminator_features)

  @property
  def latent_dim(self) -> int:
    return self.gan.latent_dim

  @property
  def resolution(self) -> int:
    return self.gan.resolution

  @property
  def uses_ema(self) -> bool:
    # checkpoint.load_generator returns the EMA weights whenever the run kept them.
    return bool(self.config.train.get("ema_decay", 0.0))

  def sample(self, z: jax.Array) -> jax.Array:
    """Images in [-1, 1] for a batch of latents (traceable: usable under grad)."""
    return self.gan.sample(self.state, z)

  def generate(self, z, batch_size: int = 64) -> np.ndarray:
    """Float32 images in [-1, 1] for latents z (N, latent_dim), `batch_size` at a time.

    Every batch is padded to `batch_size`, so image i depends only on z[i]
    (and one compiled shape serves any N).
    """
    z = np.asarray(z, np.float32).reshape(-1, self.latent_dim)
    return _batched(lambda chunk: self._sample(self.state, chunk), z, batch_size)

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


def load(workdir: str | os.PathLike, step: int | None = None, discriminator: bool = False
         ) -> TrainedGAN:
  """The trained G of `workdir` (latest step by default; EMA weights if kept), plus D if asked."""
  step = checkpoint_step(workdir, step)
  config, gan, g_params, g_batch_stats = checkpoint.load_generator(workdir, step)
  fields = {"g_params": g_params, "g_batch_stats": g_batch_stats or {}}
  if discriminator:
    d_fields = restore_fields(workdir, DISCRIMINATOR_FIELDS, step)
    fields.update(d_params=d_fields["d_params"], d_batch_stats=d_fields["d_batch_stats"] or {})
  return TrainedGAN(config, gan, partial_state(**fields), step)


def describe(model: TrainedGAN, workdir) -> str:
  weights = "EMA generator" if model.uses_ema else "generator"
  return (f"{workdir}: step {model.step}, {weights}, {model.resolution} px, "
          f"latent_dim {model.latent_dim}")
