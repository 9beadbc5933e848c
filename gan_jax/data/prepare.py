"""Decode face photos once into a memory-mappable uint8 (N, H, W, 3) array.

  python -m gan_jax.prepare --source folder:DIR --resolution 64 --crop center --out OUT

writes OUT/images.npy (uint8, N x 64 x 64 x 3) and OUT/metadata.json (source,
count, resolution, crop, resize filter, skipped files with reasons, sha256 of
the array). Sources: `folder:DIR` (nested folders walked, non-image files
ignored), `npy:FILE` (a uint8 array of any size) and `tfds:NAME` (e.g.
`tfds:celeb_a`, `tfds:lfw`, read with `tfds.load(..., data_dir=--tfds_data_dir)`).
With `--holdout N` the last N decoded images go to OUT/heldout.npy instead
(described under "heldout" in metadata.json): training on OUT never sees
them, and evaluation compares with them (docs/evaluation.md).

Every image is decoded, turned upright (EXIF orientation), made RGB (gray,
palette, CMYK; transparency is laid on white), cropped and resized with an
antialiasing Lanczos filter (data/decode.py), once, here. Training reads the result with
`loader.training_images`, which also prepares a raw folder into a cache on first use;
data/prepared_files.py reads a prepared directory back.
Files are written under temporary names and renamed at the end, and
metadata.json is written last: a directory without it is never taken as
prepared.

This module imports neither JAX nor TensorFlow (tfds only for tfds sources).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import warnings
from typing import Iterable

import numpy as np
from tqdm import tqdm

from gan_jax import cli
from gan_jax.data import decode, prepared_files
from gan_jax.data.prepared_files import ARRAY_FILE, HELDOUT_FILE, METADATA_FILE
from gan_jax.errors import DataError

SOURCE_KINDS = ("folder", "npy", "tfds")
# Bump when the decoded pixels would change, so cached arrays are made again.
PREPARE_VERSION = 1


# --- folders, arrays and tfds -------------------------------------------------------------------

def _array_frames(path: pathlib.Path) -> tuple[np.ndarray, int]:
  """The array of an `npy:` source, checked to hold uint8 images."""
  if not path.is_file():
    raise DataError(f"npy source {str(path)!r} does not exist; give a .npy file of uint8 images")
  try:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
  except (ValueError, OSError) as error:
    raise DataError(f"{path} is not a readable .npy array ({error})") from error
  channels_ok = array.ndim == 3 or (array.ndim == 4 and array.shape[-1] in (1, 3, 4))
  if array.dtype != np.uint8 or not channels_ok:
    raise DataError(f"{path} holds {array.dtype} {array.shape}; an npy source must be uint8 "
                    "(N, H, W), (N, H, W, 1), (N, H, W, 3) or (N, H, W, 4) images")
  return array, len(array)


def _tfds_frames(name: str, split: str, data_dir: str | None) -> tuple[Iterable[np.ndarray], int]:
  """The 'image' feature of a tfds data set, in its stored order."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise DataError(f"tfds:{name} needs tensorflow-datasets and tensorflow "
                    "(pip install tensorflow-datasets tensorflow-cpu)") from error
  try:
    dataset, info = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False,
                              with_info=True)
  except Exception as error:  # pylint: disable=broad-except
    raise DataError(f"could not load tfds:{name} split {split!r} ({type(error).__name__}: "
                    f"{error}); download it first or give --tfds_data_dir where it is") from error
  if "image" not in info.features:
    raise DataError(f"tfds:{name} has no 'image' feature (it has {', '.join(info.features)})")
  try:
    total = info.splits[split].num_examples
  except (KeyError, ValueError):
    total = None
  return tfds.as_numpy(dataset.map(lambda example: example["image"])), total


def parse_source(source: str) -> tuple[str, str]:
  kind, separator, value = source.partition(":")
  if not separator or kind not in SOURCE_KINDS or not value:
    raise DataError(f"--source {source!r} is not folder:DIR, npy:FILE or tfds:NAME "
                    "(e.g. folder:faces, tfds:celeb_a)")
  return kind, value


# --- writing ------------------------------------------------------------------------------------

def _temp_path(directory: pathlib.Path, name: str) -> pathlib.Path:
  fd, path = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".partial")
  os.close(fd)
  return pathlib.Path(path)


def _publish(tmp: pathlib.Path, final: pathlib.Path, mode: int = 0o666) -> None:
  """Rename `tmp` to `final` with the usual permissions (mkstemp/mkdtemp make them private)."""
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, mode & ~umask)
  os.replace(tmp, final)


def _write_json(path: pathlib.Path, data: dict) -> None:
  """Write `data` as JSON under a temporary name, then rename it into place."""
  tmp = _temp_path(path.parent, path.name)
  try:
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    _publish(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def _copy_to_npy(raw, path: pathlib.Path, shape: tuple[int, ...]) -> str:
  """Write the next prod(shape) bytes of the open file `raw` as a uint8 .npy; their sha256."""
  digest, left = hashlib.sha256(), int(np.prod(shape))
  with open(path, "wb") as npy:
    np.lib.format.write_array_header_1_0(
        npy, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
              "fortran_order": False, "shape": shape})
    while left:
      data = raw.read(min(left, 1 << 24))
      npy.write(data)
      digest.update(data)
      left -= len(data)
  return digest.hexdigest()


def _check_holdout(holdout: int, count: int | None, what: str) -> None:
  """Refuse a negative --holdout, or one that leaves nothing to train on."""
  if holdout < 0:
    raise DataError(f"--holdout {holdout} must be >= 0 (0 sets no faces aside)")
  if holdout and count is not None and holdout >= count:
    raise DataError(f"--holdout {holdout} would set aside all {count} images {what}; "
                    f"give fewer than {count}")


def _write_prepared(out_dir: pathlib.Path, results: Iterable[tuple], total: int | None,
                    resolution: int, metadata: dict, nothing_left: str,
                    progress: bool | None, holdout: int = 0) -> prepared_files.Prepared:
  """Stream decoded images into out_dir/images.npy (and the last `holdout` into
  heldout.npy) and write metadata.json last."""
  _check_holdout(holdout, total, "of the source")  # before decoding, when the count is known
  out_dir.mkdir(parents=True, exist_ok=True)
  raw_path = _temp_path(out_dir, "images.raw")
  npy_path = _temp_path(out_dir, ARRAY_FILE)
  heldout_path = _temp_path(out_dir, HELDOUT_FILE)
  try:
    # Pixels go to a raw file first: how many images decode is known only at the end.
    count, frame_shape, skipped, small = _write_raw(raw_path, results, total, resolution, progress)
    if count == 0:
      first = f" (e.g. {skipped[0]['file']}: {skipped[0]['reason']})" if skipped else ""
      raise DataError(nothing_left + first)
    _check_holdout(holdout, count, "that could be decoded")
    shape, heldout_shape = (count - holdout, *frame_shape), (holdout, *frame_shape)
    with open(raw_path, "rb") as raw:
      digest = _copy_to_npy(raw, npy_path, shape)
      if holdout:
        metadata = dict(metadata, heldout={"file": HELDOUT_FILE, "count": holdout,
                                           "shape": list(heldout_shape),
                                           "sha256": _copy_to_npy(raw, heldout_path, heldout_shape)})
    metadata = _described(metadata, shape, digest, resolution, skipped, small)
    _publish_prepared(out_dir, npy_path, heldout_path if holdout else None, metadata)
  finally:
    raw_path.unlink(missing_ok=True)
    npy_path.unlink(missing_ok=True)
    heldout_path.unlink(missing_ok=True)
  _warn_skipped_and_small(skipped, small, count, resolution, out_dir / METADATA_FILE)
  return prepared_files.open_prepared(out_dir)


def _write_raw(raw_path: pathlib.Path, results: Iterable[tuple], total: int | None,
               resolution: int, progress: bool | None) -> tuple[int, tuple | None, list, list]:
  """Append the decoded pixels to raw_path: (count, frame shape, skipped, upscaled)."""
  count, frame_shape, skipped, small = 0, None, [], []
  bar = tqdm(results, total=total, desc="prepare", unit="img",
             disable=None if progress is None else not progress)  # None: only on a terminal
  with open(raw_path, "wb") as raw:
    for name, pixels, reason, cropped_size in bar:
      if pixels is None:
        skipped.append({"file": name, "reason": reason})
        continue
      frame_shape = frame_shape or pixels.shape
      raw.write(np.ascontiguousarray(pixels).tobytes())
      count += 1
      if min(cropped_size) < resolution:
        small.append((name, cropped_size))
  return count, frame_shape, skipped, small


def _described(metadata: dict, shape: tuple, digest: str, resolution: int, skipped: list,
               small: list) -> dict:
  """metadata.json's contents: `metadata` and the training array's description."""
  return dict(metadata, count=shape[0], shape=list(shape), dtype="uint8",
              resolution=resolution, resize_filter=decode.RESIZE_FILTER, sha256=digest,
              num_skipped=len(skipped), skipped=skipped, num_upscaled=len(small),
              prepare_version=PREPARE_VERSION,
              created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _publish_prepared(out_dir: pathlib.Path, npy_path: pathlib.Path,
                      heldout_path: pathlib.Path | None, metadata: dict) -> None:
  """Rename the arrays into place and write metadata.json last."""
  # Old metadata goes first, so a crash between the renames leaves no
  # metadata.json next to an array it does not describe.
  (out_dir / METADATA_FILE).unlink(missing_ok=True)
  _publish(npy_path, out_dir / ARRAY_FILE)
  if heldout_path is not None:
    _publish(heldout_path, out_dir / HELDOUT_FILE)
  else:  # an earlier --holdout's faces would otherwise stay beside an array that has them
    (out_dir / HELDOUT_FILE).unlink(missing_ok=True)
  _write_json(out_dir / METADATA_FILE, metadata)


def _warn_skipped_and_small(skipped: list, small: list, count: int, resolution: int,
                            metadata_path: pathlib.Path) -> None:
  """Warn, as the caller of `prepare`, of the files that could not be decoded and the upscaled."""
  stacklevel = 4  # past this function, _write_prepared and prepare
  if skipped:
    named = "; ".join(f"{s['file']} ({s['reason']})" for s in skipped[:decode.NAMED_IN_WARNINGS])
    more = f"; and {len(skipped) - decode.NAMED_IN_WARNINGS} more" if len(skipped) > decode.NAMED_IN_WARNINGS else ""
    warnings.warn(f"skipped {len(skipped)} of {count + len(skipped)} images that could not be "
                  f"decoded: {named}{more} (all are listed in {metadata_path})",
                  stacklevel=stacklevel)
  if small:
    name, (width, height) = min(small, key=lambda s: min(s[1]))
    warnings.warn(f"{len(small)} of {count} images are smaller than {resolution}x{resolution} "
                  f"after cropping (smallest: {name}, {width}x{height}); they were upscaled and "
                  "will look blurry", stacklevel=stacklevel)


def prepare(source: str, resolution: int, crop: str = "center", out_dir: os.PathLike | str = ".",
            *, tfds_data_dir: str | None = None, tfds_split: str = "train",
            workers: int | None = None, progress: bool | None = True,
            holdout: int = 0) -> prepared_files.Prepared:
  """Decode `source` (folder:DIR, npy:FILE or tfds:NAME) into out_dir. See the module doc."""
  if crop not in decode.CROPS:
    raise DataError(f"unknown crop {crop!r}; use one of {', '.join(decode.CROPS)}")
  if not isinstance(resolution, int) or resolution < 1:
    raise DataError(f"resolution must be a positive number of pixels, got {resolution!r}")
  kind, value = parse_source(source)
  out_dir = pathlib.Path(out_dir)
  metadata = {"crop": crop}
  if kind == "folder":
    folder = pathlib.Path(value).expanduser()
    if not folder.exists():
      raise DataError(f"source folder {str(folder)!r} does not exist; give a folder of face images")
    if not folder.is_dir():
      raise DataError(f"{folder} is a file; folder: sources are directories (use npy:{folder} "
                      "for a .npy array)")
    files = decode.image_files_or_error(folder)
    metadata.update(source=f"folder:{folder.resolve()}",
                    source_fingerprint=decode.folder_fingerprint(folder, files))
    results = decode.decode_files(files, resolution, crop, workers)
    results = ((str(pathlib.Path(name).relative_to(folder)), *rest) for name, *rest in results)
    total, nothing_left = len(files), (f"none of the {len(files)} image files under {folder} "
                                       "could be decoded; check that they are image files")
  elif kind == "npy":
    path = pathlib.Path(value).expanduser()
    array, total = _array_frames(path)
    if total == 0:
      raise DataError(f"{path} holds no images")
    metadata.update(source=f"npy:{path.resolve()}")
    results = (decode.decode_frame(f"{path.name}[{i}]", frame, resolution, crop)
               for i, frame in enumerate(array))
    nothing_left = f"none of the {total} arrays in {path} could be made into an image"
  else:
    frames, total = _tfds_frames(value, tfds_split, tfds_data_dir)
    metadata.update(source=f"tfds:{value}", tfds_split=tfds_split, tfds_data_dir=tfds_data_dir)
    results = (decode.decode_frame(f"{value}/{tfds_split}[{i}]", frame, resolution, crop)
               for i, frame in enumerate(frames))
    nothing_left = f"tfds:{value} split {tfds_split!r} yielded no usable images"
  return _write_prepared(out_dir, results, total, resolution, metadata, nothing_left, progress,
                         holdout)


def default_cache_dir() -> pathlib.Path:
  """${GAN_JAX_CACHE:-~/.cache/gan_jax}/prepared."""
  return pathlib.Path(os.environ.get("GAN_JAX_CACHE") or "~/.cache/gan_jax").expanduser() / "prepared"


def cached_prepare(folder: pathlib.Path, resolution: int, crop: str,
                   cache_dir: os.PathLike | str | None = None,
                   progress: bool | None = None) -> prepared_files.Prepared:
  """Prepare a raw folder into the cache, or reuse what an earlier run prepared.

  The entry is keyed by (folder, resolution, crop); it is made again when the
  folder's files changed (names, sizes or modification times).
  """
  folder = folder.resolve()
  cache_dir = pathlib.Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
  key = json.dumps([str(folder), resolution, crop, PREPARE_VERSION])
  entry = cache_dir / f"{folder.name}-{resolution}px-{crop}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
  files = decode.image_files_or_error(folder)
  if prepared_files.is_prepared(entry):
    try:
      prepared = prepared_files.open_prepared(entry, resolution)
      if prepared.metadata.get("source_fingerprint") == decode.folder_fingerprint(folder, files):
        return prepared
    except DataError:
      pass  # A damaged entry is made again below.
  cache_dir.mkdir(parents=True, exist_ok=True)
  # Prepare into a private directory and rename it into place, so concurrent
  # runs (or processes of one run) never see each other's half-written files.
  work = pathlib.Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{entry.name}.", suffix=".partial"))
  try:
    prepare(f"folder:{folder}", resolution, crop, work, progress=progress)
    if entry.exists():
      stale = pathlib.Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{entry.name}.", suffix=".stale"))
      os.replace(entry, stale / "old")
      shutil.rmtree(stale, ignore_errors=True)
    try:
      _publish(work, entry, 0o777)
    except OSError:
      # Another process won the race only if it finished.
      if not prepared_files.is_prepared(entry):
        raise
  finally:
    shutil.rmtree(work, ignore_errors=True)
  return prepared_files.open_prepared(entry, resolution)


# --- command line -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m gan_jax.prepare", description=__doc__.split("\n\n")[0])
  parser.add_argument("--source", required=True, help="folder:DIR | npy:FILE | tfds:celeb_a | tfds:lfw")
  parser.add_argument("--resolution", type=int, required=True, help="output side in pixels")
  parser.add_argument("--crop", choices=decode.CROPS, default="center")
  parser.add_argument("--out", required=True, help="directory for images.npy and metadata.json")
  parser.add_argument("--tfds_data_dir", default=None, help="where tfds data sets are stored")
  parser.add_argument("--tfds_split", default="train")
  parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores)")
  parser.add_argument("--holdout", type=int, default=0,
                      help="write the last N images to OUT/heldout.npy, apart from the training "
                           "array (held-out faces for evaluation)")
  return parser


def run(args: argparse.Namespace) -> None:
  start = time.perf_counter()
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    prepared = prepare(args.source, args.resolution, args.crop, args.out,
                       tfds_data_dir=args.tfds_data_dir, tfds_split=args.tfds_split,
                       workers=args.workers, holdout=args.holdout)
  for warning in caught:
    print(f"warning: {warning.message}", file=sys.stderr)
  meta, images = prepared.metadata, prepared.images
  print(f"prepared {meta['count']} images {images.shape[1]}x{images.shape[2]} (crop "
        f"{meta['crop']}, {meta['resize_filter']}) from {meta['source']} in "
        f"{time.perf_counter() - start:.1f} s: {prepared.directory / ARRAY_FILE} "
        f"({images.nbytes / 2**20:.1f} MiB, sha256 {meta['sha256'][:16]}...); skipped "
        f"{meta['num_skipped']}, upscaled {meta['num_upscaled']}")
  if prepared.heldout is not None:
    print(f"held out the last {len(prepared.heldout)}: {prepared.directory / HELDOUT_FILE} "
          f"(sha256 {meta['heldout']['sha256'][:16]}...); {prepared.directory / ARRAY_FILE} "
          f"holds the {meta['count']} others")


def main(argv: list[str] | None = None) -> int:
  return cli.run_cli(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
