"""Turn a folder of face photos (or an .npy array) into a uint8 (N, H, W, 3) array.

Decoding and resizing happen once, here; training only ever sees pre-resized
uint8 arrays.
"""

from __future__ import annotations

import os
import pathlib
import warnings

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
CROPS = ("center", "celeba", "none")


class DataError(ValueError):
  """Bad input data: the message says what is wrong and what to do."""


def list_image_files(folder: os.PathLike | str) -> list[pathlib.Path]:
  """Image files below `folder` (nested folders walked), sorted for a stable order."""
  folder = pathlib.Path(folder)
  return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def crop_box(width: int, height: int, crop: str) -> tuple[int, int, int, int] | None:
  """The (left, top, right, bottom) box to keep, or None for the whole image.

  `center` keeps the central square. `celeba` keeps the square around the face
  in aligned CelebA photos (178x218 or any scaled copy), the crop most CelebA
  GANs use: 108/178 of the width, centred, shifted up by 20/218 of the height.
  """
  if crop == "none":
    return None
  if crop == "center":
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side
  if crop == "celeba":
    side = round(width * 108 / 178)
    left = (width - side) // 2
    top = (height - side) // 2 - round(height * 20 / 218)
    top = max(0, min(top, height - side))
    return left, top, left + side, top + side
  raise DataError(f"unknown crop {crop!r}; use one of {', '.join(CROPS)}")


def load_image(path: os.PathLike | str, resolution: int | None, crop: str = "center") -> np.ndarray:
  """Decode one image to uint8 RGB (H, W, 3), cropped and resized (antialiased).

  EXIF orientation is applied, and gray, palette, RGBA and CMYK images become RGB.
  `resolution=None` keeps the (cropped) size.
  """
  with Image.open(path) as image:
    image.load()
    image = ImageOps.exif_transpose(image)
    image = image.convert("RGB")
  box = crop_box(image.width, image.height, crop)
  if box is not None:
    image = image.crop(box)
  if resolution is not None and image.size != (resolution, resolution):
    image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
  return np.asarray(image, dtype=np.uint8)


def load_image_array(path: os.PathLike | str, resolution: int | None, crop: str = "center",
                     limit: int | None = None) -> np.ndarray:
  """Load a folder of images or an .npy uint8 array as (N, H, W, 3) uint8.

  Undecodable files in a folder are skipped with a warning; it is an error
  only when nothing usable is left.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise DataError(f"data path {str(path)!r} does not exist; set --config.data.path to a folder of "
                    "face images or a prepared .npy file")
  if path.is_file():
    if path.suffix != ".npy":
      raise DataError(f"{path} is a file but not a .npy array; give a folder of images or a .npy file")
    array = np.load(path, mmap_mode="r")
    check_image_array(array, resolution, str(path))
    return array if limit is None else array[:limit]
  files = list_image_files(path)
  if not files:
    raise DataError(f"no image files (.jpg, .png, ...) found under {path}")
  if limit is not None:
    files = files[:limit]
  images, skipped = [], []
  for file in files:
    try:
      images.append(load_image(file, resolution, crop))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
      skipped.append(f"{file}: {error}")
  if skipped:
    warnings.warn(f"skipped {len(skipped)} undecodable image(s): " + "; ".join(skipped[:5]))
  if not images:
    raise DataError(f"none of the {len(files)} image files under {path} could be decoded")
  shapes = {image.shape for image in images}
  if len(shapes) > 1:
    raise DataError(f"images under {path} have different sizes {sorted(shapes)[:3]}; give a resolution")
  return np.stack(images)


def check_image_array(array: np.ndarray, resolution: int | None, name: str) -> None:
  """Raise DataError unless `array` is uint8 (N, resolution, resolution, 3)."""
  if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
    raise DataError(f"{name} holds {array.dtype} {array.shape}; expected uint8 (N, H, W, 3) images. "
                    "Make one with `python -m gan_jax.prepare`.")
  if resolution is not None and array.shape[1:3] != (resolution, resolution):
    raise DataError(f"{name} holds {array.shape[1]}x{array.shape[2]} images but data.resolution is "
                    f"{resolution}; prepare it at {resolution} px or set --config.data.resolution="
                    f"{array.shape[1]}")
  if len(array) == 0:
    raise DataError(f"{name} holds no images")
