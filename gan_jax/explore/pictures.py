"""Pictures for the exploration commands: real photos in, zoomed PNGs out."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from gan_jax import images as image_lib
from gan_jax.errors import ExploreError
from gan_jax.data import decode


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
    return decode.load_image(path, resolution, crop)
  except OSError as error:
    raise ExploreError(f"cannot read image {path}: {error}") from error


def save_png(path, image, factor: int = 1) -> pathlib.Path:
  return image_lib.save_png(path, zoom(image_lib.to_uint8(image), factor))
