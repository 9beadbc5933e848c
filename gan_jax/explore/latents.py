"""Latents of a trained generator: seeded draws, latent files, and walks between them.

The latent for (seed, index) is `normal(fold_in(key(seed), index))`, drawn on
the CPU so that a seed means the same latent on every machine. Image `i` of
`generate --seed S` uses (S, i); the keyframe `--seeds S` of `interpolate`
uses (S, 0), i.e. the first image of `generate --seed S`.

Truncation (`--truncation t`) resamples every latent component with |z| > t
(`jax.random.truncated_normal` on [-t, t]); it does not rescale latents, so a
truncated latent is a new draw rather than a shrunken copy of the untruncated one.
"""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import streams
from gan_jax.errors import ExploreError

INTERPOLATIONS = ("slerp", "lerp")


def latents(seed: int, num: int, latent_dim: int, truncation: float | None = None,
            start: int = 0) -> np.ndarray:
  """(num, latent_dim) float32 latents for indices start..start+num-1 of `seed`."""
  if truncation is not None and not truncation > 0:
    raise ExploreError(f"--truncation must be > 0 (e.g. 0.7), got {truncation}")
  cpu = jax.local_devices(backend="cpu")[0]
  with jax.default_device(cpu):
    keys = jax.vmap(lambda i: streams.latent_key(seed, i))(jnp.arange(start, start + num))
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
