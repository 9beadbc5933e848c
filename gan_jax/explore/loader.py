"""Shared helpers for exploring a trained generator.

Load G (and D when asked) from a training checkpoint without its optimiser
state, turn seeds into latents, interpolate between latents and write pictures.
Used by `generate`, `interpolate`, `project` and `nearest`.

Latents: the latent for (seed, index) is `normal(fold_in(key(seed), index))`,
drawn on the CPU so that a seed means the same latent on every machine. Image
`i` of `generate --seed S` uses (S, i); the keyframe `--seeds S` of
`interpolate` uses (S, 0), i.e. the first image of `generate --seed S`.

Truncation (`--truncation t`) resamples every latent component with |z| > t
(`jax.random.truncated_normal` on [-t, t]); it does not rescale latents, so a
truncated latent is a new draw rather than a shrunken copy of the untruncated one.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from gan_jax import checkpoint
from gan_jax import images as image_lib
from gan_jax.data import prepare
from gan_jax.training.state import GANState
from gan_jax.training.gan import GAN
from gan_jax.errors import ExploreError

DISCRIMINATOR_FIELDS = ("d_params", "d_batch_stats")
INTERPOLATIONS = ("slerp", "lerp")



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
    images = to_float(images)
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


# --- latents ---------------------------------------------------------------------------------


def latents(seed: int, num: int, latent_dim: int, truncation: float | None = None,
            start: int = 0) -> np.ndarray:
  """(num, latent_dim) float32 latents for indices start..start+num-1 of `seed`."""
  if truncation is not None and not truncation > 0:
    raise ExploreError(f"--truncation must be > 0 (e.g. 0.7), got {truncation}")
  cpu = jax.local_devices(backend="cpu")[0]
  with jax.default_device(cpu):
    base = jax.random.key(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(start, start + num))
    if truncation is None:
      draw = lambda key: jax.random.normal(key, (latent_dim,), jnp.float32)
    else:
      draw = lambda key: jax.random.truncated_normal(key, -truncation, truncation, (latent_dim,),
                                                     jnp.float32)
    return np.asarray(jax.vmap(draw)(keys))


def seed_latents(seeds: Sequence[int], latent_dim: int, truncation: float | None = None
                 ) -> np.ndarray:
  """One latent per seed: the first latent of each (what `generate --seed S` shows first)."""
  return np.stack([latents(seed, 1, latent_dim, truncation)[0] for seed in seeds])


def load_latents(paths: Sequence[str | os.PathLike], latent_dim: int) -> np.ndarray:
  """Latents from .npy files (e.g. written by `project`), each (latent_dim,) or (N, latent_dim)."""
  loaded = []
  for path in paths:
    path = pathlib.Path(path)
    if not path.is_file():
      raise ExploreError(f"latent file {path} does not exist")
    z = np.load(path)
    if z.ndim not in (1, 2) or z.shape[-1] != latent_dim:
      raise ExploreError(f"{path} holds an array of shape {z.shape}; this model needs latents of "
                         f"shape ({latent_dim},) or (N, {latent_dim})")
    loaded.append(z.reshape(-1, latent_dim).astype(np.float32))
  return np.concatenate(loaded)


# --- interpolation ---------------------------------------------------------------------------


def lerp(a, b, t) -> np.ndarray:
  """Straight-line interpolation: (len(t), D) points between a (t=0) and b (t=1)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  t = np.asarray(t, np.float64)[:, None]
  return ((1.0 - t) * a + t * b).astype(np.float32)


def slerp(a, b, t) -> np.ndarray:
  """Spherical interpolation along the great circle from a to b (norms interpolated too).

  Gaussian latents live near a sphere, where a straight line cuts through the
  low-density interior; slerp keeps every point typical. Falls back to lerp
  for (anti)parallel vectors, where the great circle is undefined.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  t = np.asarray(t, np.float64)[:, None]
  cos = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
  omega = np.arccos(np.clip(cos, -1.0, 1.0))
  if np.sin(omega) < 1e-6:
    return lerp(a, b, t[:, 0])
  return ((np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
          ).astype(np.float32)


def interpolate(a, b, t, method: str = "slerp") -> np.ndarray:
  if method not in INTERPOLATIONS:
    raise ExploreError(f"unknown interpolation {method!r}; use one of {', '.join(INTERPOLATIONS)}")
  return (slerp if method == "slerp" else lerp)(a, b, t)


def is_loop(keyframes: np.ndarray) -> bool:
  return len(keyframes) > 2 and np.array_equal(keyframes[0], keyframes[-1])


def walk(keyframes, frames: int, method: str = "slerp") -> np.ndarray:
  """Latents of a walk through `keyframes` (K, D), `frames` per segment.

  Each segment covers t in [0, 1) so keyframes are not repeated. A loop
  (first keyframe == last) ends just before its start: (K-1)*frames latents that
  repeat seamlessly. Otherwise the last keyframe is appended: (K-1)*frames + 1.
  """
  keyframes = np.asarray(keyframes, np.float32)
  if len(keyframes) < 2:
    raise ExploreError("a walk needs at least 2 keyframes (e.g. --seeds 3,7)")
  if frames < 1:
    raise ExploreError(f"--frames must be >= 1, got {frames}")
  t = np.arange(frames) / frames
  points = [interpolate(a, b, t, method) for a, b in zip(keyframes[:-1], keyframes[1:])]
  if not is_loop(keyframes):
    points.append(keyframes[-1:])
  return np.concatenate(points)


def pair_rows(keyframes, columns: int, method: str = "slerp") -> np.ndarray:
  """(K-1, columns, D): per consecutive keyframe pair, `columns` points from a to b inclusive."""
  keyframes = np.asarray(keyframes, np.float32)
  if len(keyframes) < 2:
    raise ExploreError("an interpolation grid needs at least 2 keyframes (e.g. --seeds 3,7)")
  if columns < 2:
    raise ExploreError(f"an interpolation grid needs --frames >= 2 columns, got {columns}")
  t = np.linspace(0.0, 1.0, columns)
  return np.stack([interpolate(a, b, t, method) for a, b in zip(keyframes[:-1], keyframes[1:])])


# --- pictures --------------------------------------------------------------------------------


def to_float(images) -> np.ndarray:
  """uint8 [0, 255] or float [-1, 1] images -> float32 [-1, 1]."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 127.5 - 1.0
  return images.astype(np.float32)


def zoom(images: np.ndarray, factor: int) -> np.ndarray:
  """Nearest-neighbour upscaling of (..., H, W, C) images by an integer factor (sharp pixels)."""
  if factor < 1:
    raise ExploreError(f"--zoom must be >= 1, got {factor}")
  if factor == 1:
    return images
  return np.repeat(np.repeat(images, factor, axis=-3), factor, axis=-2)


def load_target(path: str | os.PathLike, resolution: int, crop: str) -> np.ndarray:
  """A real photo as the model sees it: uint8 (resolution, resolution, 3)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise ExploreError(f"image {path} does not exist")
  try:
    return prepare.load_image(path, resolution, crop)
  except OSError as error:
    raise ExploreError(f"cannot read image {path}: {error}") from error


def save_png(path, image, factor: int = 1) -> pathlib.Path:
  return image_lib.save_png(path, zoom(image_lib.to_uint8(image), factor))


# --- command lines ---------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
  """argparse type for '3,7,11'."""
  try:
    values = [int(part) for part in text.split(",") if part.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
  if not values:
    raise argparse.ArgumentTypeError("expected at least one integer")
  return values


def positive_int(text: str) -> int:
  """argparse type for a count that must be at least 1."""
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
  return value


def path_list(text: str) -> list[str]:
  """argparse type for 'a.npy,b.npy'."""
  return [part for part in text.split(",") if part.strip()]


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--workdir", required=True,
                      help="training directory (the one given to gan_jax.main); its checkpoints/ "
                           "hold the weights and the config")
  parser.add_argument("--step", type=int, default=None,
                      help="checkpoint step to load (default: the latest)")
  parser.add_argument("--batch_size", type=positive_int, default=64,
                      help="images per generator call (lower it if memory runs out)")


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], None],
            argv: Sequence[str] | None) -> int:
  """Parse argv, run, and turn user errors into one line on stderr and exit code 1."""
  args = parser.parse_args(argv)
  logging.set_verbosity(logging.ERROR)  # Orbax reports every restore at INFO/WARNING.
  try:
    run(args)
  except (ExploreError, prepare.DataError, checkpoint.CheckpointError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  return 0


def describe(model: TrainedGAN, workdir) -> str:
  weights = "EMA generator" if model.uses_ema else "generator"
  return (f"{workdir}: step {model.step}, {weights}, {model.resolution} px, "
          f"latent_dim {model.latent_dim}")
