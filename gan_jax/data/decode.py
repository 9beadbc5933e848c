"""Decoding face photos: files found in a folder, each made upright, RGB, cropped and resized.

Every image is decoded, turned upright (EXIF orientation), made RGB (gray,
palette, CMYK; transparency is laid on white), cropped and resized with an
antialiasing Lanczos filter. `prepare` does this once for a whole folder;
`load_image` does it for one photo (projection, nearest faces).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import multiprocessing
import os
import pathlib
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from gan_jax.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
CROPS = ("center", "celeba", "none")
RESIZE_FILTER = "lanczos"  # PIL.Image.Resampling.LANCZOS: antialiased when shrinking
# Fewer files than this are decoded in this process: a pool takes ~1 s to start.
MIN_FILES_FOR_POOL = 256
# How many skipped files a warning names (metadata.json lists them all).
NAMED_IN_WARNINGS = 5


def list_image_files(folder: os.PathLike | str) -> list[pathlib.Path]:
  """Image files below `folder`, sorted for a stable order.

  Nested folders (symlinked ones too) are walked; files of other types and
  hidden files (such as macOS `._x.jpg` resource forks) are ignored.
  """
  folder = pathlib.Path(folder)
  files, seen = [], set()
  for root, dirs, names in os.walk(folder, followlinks=True):
    # A symlink back up the tree would otherwise be walked forever.
    real = os.path.realpath(root)
    if real in seen:
      dirs.clear()
      continue
    seen.add(real)
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    files.extend(pathlib.Path(root, name) for name in names
                 if not name.startswith(".") and pathlib.Path(name).suffix.lower() in IMAGE_SUFFIXES)
  return sorted(files)


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
    side = max(1, min(round(width * 108 / 178), height))
    left = (width - side) // 2
    top = (height - side) // 2 - round(height * 20 / 218)
    top = max(0, min(top, height - side))
    return left, top, left + side, top + side
  raise DataError(f"unknown crop {crop!r}; use one of {', '.join(CROPS)}")


def to_rgb(image: Image.Image) -> Image.Image:
  """An RGB copy of `image`, whatever its mode.

  Gray, palette and CMYK convert directly; 16-bit gray keeps its top 8 bits;
  transparent pixels are laid on white (their stored colour is often junk).
  """
  if image.mode.startswith("I;16"):
    image = Image.fromarray((np.asarray(image, np.uint32) >> 8).astype(np.uint8))
  has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
      image.mode == "P" and "transparency" in image.info)
  if has_alpha:
    image = image.convert("RGBA")
    image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
  return image.convert("RGB")


def crop_and_resize(image: Image.Image, resolution: int | None, crop: str
                    ) -> tuple[np.ndarray, tuple[int, int]]:
  """uint8 (resolution, resolution, 3) pixels and the (width, height) the crop kept."""
  box = crop_box(image.width, image.height, crop)
  if box is not None:
    image = image.crop(box)
  cropped_size = image.size
  if resolution is not None and image.size != (resolution, resolution):
    image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
  return np.asarray(image, dtype=np.uint8), cropped_size


def load_image(path: os.PathLike | str, resolution: int | None, crop: str = "center") -> np.ndarray:
  """Decode one image to uint8 RGB (H, W, 3), upright, cropped and resized (antialiased).

  `resolution=None` keeps the (cropped) size.
  """
  with Image.open(path) as image:
    image.load()
    image = to_rgb(ImageOps.exif_transpose(image))
  return crop_and_resize(image, resolution, crop)[0]


def decode_file(path: str, resolution: int | None, crop: str):
  """(name, pixels, None, cropped size), or (name, None, reason, None) when undecodable."""
  try:
    with Image.open(path) as image:
      image.load()
      image = to_rgb(ImageOps.exif_transpose(image))
    pixels, cropped_size = crop_and_resize(image, resolution, crop)
    return path, pixels, None, cropped_size
  except Exception as error:  # pylint: disable=broad-except
    # Broken files fail in many ways (OSError, SyntaxError, struct.error, ...);
    # each is reported by name instead of stopping the whole run.
    return path, None, str(error) or type(error).__name__, None


def decode_frame(name: str, frame: np.ndarray, resolution: int | None, crop: str):
  """Like `decode_file`, for an already decoded uint8 (H, W[, C]) array."""
  try:
    if frame.ndim == 3 and frame.shape[-1] == 1:
      frame = frame[..., 0]
    pixels, cropped_size = crop_and_resize(to_rgb(Image.fromarray(np.asarray(frame))),
                                           resolution, crop)
    return name, pixels, None, cropped_size
  except Exception as error:  # pylint: disable=broad-except
    return name, None, str(error) or type(error).__name__, None


def decode_files(files: list[pathlib.Path], resolution: int | None, crop: str,
                  workers: int | None) -> Iterator[tuple]:
  """`decode_file` over `files`, in their order, on `workers` processes."""
  workers = workers or len(os.sched_getaffinity(0))
  paths = [str(f) for f in files]
  if workers <= 1 or len(paths) < MIN_FILES_FOR_POOL:
    yield from (decode_file(p, resolution, crop) for p in paths)
    return
  # `spawn`, not fork: the caller may be a multithreaded JAX process.
  context = multiprocessing.get_context("spawn")
  chunk = max(1, min(64, len(paths) // (workers * 8)))
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
    try:
      # map keeps the input order, so the array is the same for any worker count.
      yield from pool.map(decode_file, paths, itertools.repeat(resolution),
                          itertools.repeat(crop), chunksize=chunk)
    except BaseException:
      pool.shutdown(wait=False, cancel_futures=True)
      raise



def image_files_or_error(folder: pathlib.Path) -> list[pathlib.Path]:
  """`list_image_files(folder)`, or a DataError saying why there are none."""
  files = list_image_files(folder)
  if files:
    return files
  others = sorted(p.name for p in folder.rglob("*") if p.is_file())
  if not others:
    raise DataError(f"no image files (.jpg, .png, ...) found under {folder}: the folder is empty; "
                    "put face photos in it or point to another folder")
  raise DataError(f"no image files (.jpg, .png, ...) found under {folder}: it holds only "
                  f"{len(others)} other file(s), e.g. {', '.join(others[:3])}")


def folder_fingerprint(folder: pathlib.Path, files: list[pathlib.Path]) -> str:
  """sha256 of the files' relative names, sizes and modification times."""
  digest = hashlib.sha256()
  for file in files:
    stat = file.stat()
    digest.update(f"{file.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()
