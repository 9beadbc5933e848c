"""Pixel conversions, image grids and PNG files.

The one place that maps uint8 [0, 255] to the models' [-1, 1] and back. The
conversions work on numpy and on JAX arrays (also inside a jitted step) through
the arrays' own methods, so this module needs no JAX.
"""

from __future__ import annotations

import math
import os
import pathlib

import numpy as np
from PIL import Image


def to_float(images, dtype=np.float32):
  """uint8 [0, 255] -> [-1, 1] in `dtype`; float images are taken as already scaled (cast only).

  A numpy or JAX array stays one (a list becomes numpy).
  """
  if not hasattr(images, "astype"):
    images = np.asarray(images)
  if images.dtype == np.uint8:
    return images.astype(dtype) / 127.5 - 1.0
  return images.astype(dtype)


def to_uint8(images) -> np.ndarray:
  """Images in [-1, 1] (float) or uint8 -> uint8 [0, 255]."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  return np.clip(np.rint((images.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images, columns: int | None = None, padding: int = 2) -> np.ndarray:
  """Tile (N, H, W, 3) images into one uint8 picture, `columns` wide (default ~square)."""
  images = to_uint8(images)
  n, h, w, c = images.shape
  columns = columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), 255,
                 np.uint8)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    top, left = padding + r * (h + padding), padding + col * (w + padding)
    grid[top:top + h, left:left + w] = image
  return grid


def save_png(path: os.PathLike | str, image: np.ndarray) -> pathlib.Path:
  """Write one uint8 (H, W, 3) image as PNG, atomically (temp name, then rename)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
  os.replace(tmp, path)
  return path
