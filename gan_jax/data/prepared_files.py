"""A prepared directory's files, and reading them back memory-mapped and checked.

`python -m gan_jax.prepare` (data/prepare.py) writes OUT/images.npy, with
--holdout N OUT/heldout.npy, and OUT/metadata.json last; `open_prepared`
reads them, checking that the arrays are the images metadata.json describes.
`check_image_array` is the check every uint8 image array passes (data/loader.py
applies it to a plain .npy too).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from gan_jax.errors import DataError

ARRAY_FILE = "images.npy"
HELDOUT_FILE = "heldout.npy"  # the last --holdout images, never trained on
METADATA_FILE = "metadata.json"


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A prepared data set: the memory-mapped array and what made it."""
  images: np.ndarray  # uint8 (N, H, W, 3), memory-mapped read-only
  metadata: dict
  directory: pathlib.Path
  heldout: np.ndarray | None = None  # OUT/heldout.npy of --holdout N; None without


def is_prepared(directory: os.PathLike | str) -> bool:
  directory = pathlib.Path(directory)
  return (directory / METADATA_FILE).is_file() and (directory / ARRAY_FILE).is_file()


def open_prepared(directory: os.PathLike | str, resolution: int | None = None) -> Prepared:
  """The memory-mapped array of a prepared directory, checked against its metadata."""
  directory = pathlib.Path(directory)
  if not (directory / METADATA_FILE).is_file():
    raise DataError(f"{directory} has no {METADATA_FILE}: it is not a prepared data set, or its "
                    "preparation was interrupted; run `python -m gan_jax.prepare` again")
  try:
    metadata = json.loads((directory / METADATA_FILE).read_text())
    images = np.load(directory / ARRAY_FILE, mmap_mode="r", allow_pickle=False)
  except (OSError, ValueError) as error:
    raise DataError(f"cannot read the prepared data set in {directory} ({error}); run "
                    "`python -m gan_jax.prepare` again") from error
  _check_described(images, metadata.get("shape"), str(directory / ARRAY_FILE), resolution)
  heldout = None
  if metadata.get("heldout"):
    try:
      heldout = np.load(directory / HELDOUT_FILE, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
      raise DataError(f"cannot read the held-out faces of {directory} ({error}); run "
                      "`python -m gan_jax.prepare` again") from error
    _check_described(heldout, metadata["heldout"].get("shape"), str(directory / HELDOUT_FILE),
                     resolution)
  return Prepared(images, metadata, directory, heldout)


def _check_described(images: np.ndarray, shape: list | None, name: str,
                     resolution: int | None) -> None:
  """Raise DataError unless `images` are uint8 images of the `shape` metadata.json gives."""
  check_image_array(images, resolution, name)
  if list(images.shape) != shape:
    raise DataError(f"{name} holds {tuple(images.shape)} but {METADATA_FILE} says "
                    f"{shape}: the files do not belong together; run "
                    "`python -m gan_jax.prepare` again")


def check_image_array(array: np.ndarray, resolution: int | None, name: str) -> None:
  """Raise DataError unless `array` is uint8 (N, resolution, resolution, 3)."""
  if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
    raise DataError(f"{name} holds {array.dtype} {array.shape}; expected uint8 (N, H, W, 3) images. "
                    "Make one with `python -m gan_jax.prepare --source npy:FILE` or from a folder.")
  if resolution is not None and array.shape[1:3] != (resolution, resolution):
    raise DataError(f"{name} holds {array.shape[1]}x{array.shape[2]} images but data.resolution is "
                    f"{resolution}; prepare it at {resolution} px (--resolution {resolution}) or set "
                    f"--config.data.resolution={array.shape[1]}")
  if len(array) == 0:
    raise DataError(f"{name} holds no images")
