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


def load_photos(spec: str | os.PathLike | list, resolution: int, crop: str
                ) -> tuple[list[str], np.ndarray]:
  """(names, uint8 (N, resolution, resolution, 3)) of real photos as the model sees them.

  `spec`: a folder (its image files, sorted), a comma-separated list (or a list)
  of image files, or one uint8 .npy of (N, resolution, resolution, 3) images.
  A missing or unreadable file, or a .npy of another size: ExploreError.
  """
  parts = spec if isinstance(spec, (list, tuple)) else [p for p in str(spec).split(",") if p]
  if not parts:
    raise ExploreError("no images given; pass a folder, image files (a.jpg,b.jpg) or a .npy")
  if len(parts) == 1 and pathlib.Path(parts[0]).suffix.lower() == ".npy":
    return _load_npy(pathlib.Path(parts[0]), resolution)
  if len(parts) == 1 and pathlib.Path(parts[0]).is_dir():
    files = decode.list_image_files(parts[0])
    if not files:
      raise ExploreError(f"no image files (.jpg, .png, ...) in {parts[0]}")
  else:
    files = [pathlib.Path(p) for p in parts]
  return [f.stem for f in files], np.stack([load_target(f, resolution, crop) for f in files])


def _load_npy(path: pathlib.Path, resolution: int) -> tuple[list[str], np.ndarray]:
  if not path.is_file():
    raise ExploreError(f"image array {path} does not exist")
  try:
    images = np.load(path)
  except (OSError, ValueError) as error:
    raise ExploreError(f"cannot read image array {path}: {error}") from error
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (resolution,
                                                                          resolution, 3):
    raise ExploreError(
        f"{path} holds {images.dtype} images of shape {images.shape[1:]}; the model takes uint8 "
        f"({resolution}, {resolution}, 3): pass photos instead (they are cropped and resized) "
        f"or a .npy prepared at {resolution} px")
  return [f"{path.stem}_{i:05d}" for i in range(len(images))], images
