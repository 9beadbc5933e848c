"""A path of faces -> a uint8 (N, H, W, 3) array: the one way data paths are read.

A path is a prepared directory (images.npy + metadata.json), a uint8 .npy
file, or a raw folder of images. Training (`training_images`) prepares a raw
folder once into a cache and memory-maps it; the evaluation and exploration
commands (`load_image_array`) decode a folder in memory, caching nothing.
"""

from __future__ import annotations

import os
import pathlib
import warnings

import numpy as np

from gan_jax.data import decode
from gan_jax.data import prepare
from gan_jax.errors import DataError


# What a user who gave a bad path can do, by the command that read it.
TRAINING_HINT = "set --config.data.path to a folder of face images, a prepared directory or a .npy file"
COMMAND_HINT = "give a folder of face images, a prepared directory or a .npy file"


def ready_array(path: pathlib.Path, resolution: int | None, hint: str
                ) -> tuple[np.ndarray | None, dict]:
  """(array, metadata) of a .npy file ({}) or a prepared directory at `path`; (None, {}) for a
  raw folder.

  Raises DataError for a missing path, a file that is not .npy, an array of
  the wrong kind or size, or a directory whose preparation was interrupted.
  """
  if not path.exists():
    raise DataError(f"data path {str(path)!r} does not exist; {hint}")
  if path.is_file():
    if path.suffix != ".npy":
      raise DataError(f"{path} is a file but not a .npy array; {hint}")
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    prepare.check_image_array(array, resolution, str(path))
    return array, {}
  if prepare.is_prepared(path):
    prepared = prepare.open_prepared(path, resolution)
    return prepared.images, prepared.metadata
  if (path / prepare.ARRAY_FILE).is_file():
    raise DataError(f"{path} holds {prepare.ARRAY_FILE} but no {prepare.METADATA_FILE}: its "
                    "preparation was interrupted or it was not made by gan_jax.prepare; run "
                    "`python -m gan_jax.prepare` again")
  return None, {}


def training_images(path: os.PathLike | str, resolution: int | None, crop: str = "center",
                    cache_dir: os.PathLike | str | None = None, limit: int | None = None,
                    progress: bool | None = None) -> np.ndarray:
  """The uint8 (N, resolution, resolution, 3) array that `data.path` names, memory-mapped.

  `path` is a prepared directory (images.npy + metadata.json), a uint8 .npy
  file, or a raw folder of images, which is prepared into `cache_dir` (default
  `prepare.default_cache_dir()`) on first use and reused afterwards.
  """
  if not str(path):
    raise DataError(f"data.path is empty; {TRAINING_HINT}")
  path = pathlib.Path(path).expanduser()
  images, metadata = ready_array(path, resolution, TRAINING_HINT)
  if images is not None:
    if metadata.get("crop", crop) != crop:
      warnings.warn(f"{path} was prepared with crop {metadata['crop']!r}, not data.crop={crop!r}; "
                    "using it as prepared", stacklevel=2)
  elif resolution is None:
    raise DataError(f"{path} is a folder of images; give a resolution to prepare it at")
  else:
    images = prepare.cached_prepare(path, resolution, crop, cache_dir, progress).images
  return images if not limit else images[:limit]


def load_image_array(path: os.PathLike | str, resolution: int | None, crop: str = "center",
                     limit: int | None = None) -> np.ndarray:
  """Load a folder of images, a prepared directory or a uint8 .npy as (N, H, W, 3) uint8.

  Folders are decoded in memory (nothing cached). Undecodable files are
  skipped with a warning; it is an error only when nothing usable is left.
  """
  path = pathlib.Path(path)
  array, _ = ready_array(path, resolution, COMMAND_HINT)
  if array is not None:
    return array if limit is None else array[:limit]
  files = decode.image_files_or_error(path)
  if limit is not None:
    files = files[:limit]
  images, skipped = [], []
  for name, pixels, reason, _ in decode.decode_files(files, resolution, crop, workers=1):
    if pixels is None:
      skipped.append(f"{name}: {reason}")
    else:
      images.append(pixels)
  if skipped:
    warnings.warn(f"skipped {len(skipped)} undecodable image(s): "
                  + "; ".join(skipped[:decode.NAMED_IN_WARNINGS]), stacklevel=2)
  if not images:
    raise DataError(f"none of the {len(files)} image files under {path} could be decoded")
  shapes = {image.shape for image in images}
  if len(shapes) > 1:
    raise DataError(f"images under {path} have different sizes {sorted(shapes)[:3]}; give a resolution")
  return np.stack(images)
