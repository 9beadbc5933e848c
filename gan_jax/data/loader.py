"""A path of faces -> a uint8 (N, H, W, 3) array: the one way data paths are read.

A path is a prepared directory (images.npy + metadata.json), a uint8 .npy
file, or a raw folder of images. Training (`training_images`) prepares a raw
folder once into a cache and memory-maps it; the evaluation and exploration
commands (`load_image_array`) decode a folder in memory, caching nothing.

Held-out faces (`data_split`): `data.holdout = N` sets the last N images of
the array aside before `data.limit` applies to the rest, so data.holdout=1000
on 6,000 faces trains on exactly the array data.limit=5000 gives. A directory
prepared with `--holdout N` holds them apart already (heldout.npy).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings

import numpy as np

from gan_jax.data import decode
from gan_jax.data import prepare, prepared_files
from gan_jax.errors import ConfigError, DataError


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
    prepared_files.check_image_array(array, resolution, str(path))
    return array, {}
  if prepared_files.is_prepared(path):
    prepared = prepared_files.open_prepared(path, resolution)
    return prepared.images, prepared.metadata
  if (path / prepared_files.ARRAY_FILE).is_file():
    raise DataError(f"{path} holds {prepared_files.ARRAY_FILE} but no "
                    f"{prepared_files.METADATA_FILE}: its preparation was interrupted or it was "
                    "not made by gan_jax.prepare; run `python -m gan_jax.prepare` again")
  return None, {}


@dataclasses.dataclass(frozen=True)
class Split:
  """A data path's faces: those a run trains on and those it never sees.

  Both arrays are memory-mapped slices of .npy files; the files and offsets
  say where, so features of either can be cached by file (metrics/fid.py).
  """
  training: np.ndarray  # uint8 (N, H, W, 3): what training reads (data.limit applied)
  heldout: np.ndarray | None  # the held-out faces; None when the data sets none aside
  training_file: str | None  # the .npy whose first len(training) images are `training`
  heldout_file: str | None = None  # the .npy holding `heldout` ...
  heldout_start: int = 0  # ... from this image on


def _file_of(images: np.ndarray) -> str | None:
  """The .npy file a memory-mapped array reads (None for an array in memory)."""
  filename = getattr(images, "filename", None)
  return str(filename) if filename else None


def split_holdout(images: np.ndarray, holdout: int, name: str) -> tuple[np.ndarray, np.ndarray | None]:
  """(the first N - holdout images, the last holdout ones or None); refuses holdout >= N."""
  if holdout < 0:
    raise ConfigError(f"data.holdout={holdout} must be >= 0 (0 sets no faces aside)")
  if holdout >= len(images):
    raise ConfigError(f"data.holdout={holdout} would set aside all {len(images)} images of {name}; "
                      f"use fewer than {len(images)} (--config.data.holdout)")
  if not holdout:
    return images, None
  return images[:len(images) - holdout], images[len(images) - holdout:]


def data_split(path: os.PathLike | str, resolution: int | None, crop: str = "center",
               cache_dir: os.PathLike | str | None = None, limit: int | None = None,
               holdout: int = 0, progress: bool | None = None,
               hint: str = TRAINING_HINT) -> Split:
  """The training and held-out faces that `data.path` names, memory-mapped.

  `path` is a prepared directory (images.npy + metadata.json, and
  heldout.npy when prepared with --holdout), a uint8 .npy file, or a raw
  folder of images, which is prepared into `cache_dir` (default
  `prepare.default_cache_dir()`) on first use and reused afterwards. The
  last `holdout` images are set aside first; `limit` then takes the first
  images of the rest. `hint` ends the error for a missing or wrong path (a
  command with --data says COMMAND_HINT).
  """
  if not str(path):
    raise DataError(f"data.path is empty; {hint}")
  path = pathlib.Path(path).expanduser()
  heldout = None
  if path.is_dir() and prepared_files.is_prepared(path):
    prepared = prepared_files.open_prepared(path, resolution)
    images, metadata, heldout = prepared.images, prepared.metadata, prepared.heldout
  else:
    images, metadata = ready_array(path, resolution, hint)
  if images is not None:
    if metadata.get("crop", crop) != crop:
      warnings.warn(f"{path} was prepared with crop {metadata['crop']!r}, not data.crop={crop!r}; "
                    "using it as prepared", stacklevel=3)
  elif resolution is None:
    raise DataError(f"{path} is a folder of images; give a resolution to prepare it at")
  else:
    images = prepare.cached_prepare(path, resolution, crop, cache_dir, progress).images
  file = _file_of(images)
  if heldout is not None:
    if holdout:
      raise ConfigError(f"{path} already holds {len(heldout)} held-out faces "
                        f"({prepared_files.HELDOUT_FILE}); leave data.holdout at 0 to use them")
    return Split(images[:limit] if limit else images, heldout, file, _file_of(heldout), 0)
  training, heldout = split_holdout(images, holdout, str(path))
  return Split(training[:limit] if limit else training, heldout, file,
               file if heldout is not None else None, len(training))


def training_images(path: os.PathLike | str, resolution: int | None, crop: str = "center",
                    cache_dir: os.PathLike | str | None = None, limit: int | None = None,
                    progress: bool | None = None, holdout: int = 0) -> np.ndarray:
  """The uint8 (N, resolution, resolution, 3) array training reads: `data_split(...).training`."""
  return data_split(path, resolution, crop, cache_dir, limit, holdout, progress).training


def run_training_images(data) -> np.ndarray:
  """The faces a run whose config.data is `data` trains on: its data.limit and data.holdout
  applied (what gan_jax.train and gan_jax.bench read)."""
  return training_images(data.path, data.resolution, data.crop, data.cache_dir,
                         limit=data.limit or None, holdout=data.holdout)


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
