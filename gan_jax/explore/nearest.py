"""Memorisation check: generated faces next to their nearest training images.

  python -m gan_jax.nearest --workdir runs/faces --num 8 --k 5 --out nearest.png

Each row of the picture is one generated sample (left) followed by its --k
nearest training images, closest first. If the neighbours are near-copies of
the samples, the generator memorised its data; if they are merely similar
faces, it did not. --data defaults to the run's data.path, read the way
training read it (same resolution, crop, data.limit and data.holdout): the
faces the run set aside are never searched.

Distances (--space):
  pixels         Euclidean distance of the images in [0, 1], printed as the
                 root-mean-square difference per pixel value (0 = identical).
  discriminator  Euclidean distance of the trained D's last convolution
                 features, L2-normalised (0 = identical, 2 = opposite): less
                 fooled by small shifts and lighting than pixels.
For scale, --baseline training images are matched against the other training
images too: samples far closer to their neighbours than training images are to
theirs are near-copies. The .json beside the PNG holds every index and (raw
Euclidean) distance.
Samples use the latents of `generate --seed S`, so the rows match its images.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import NamedTuple

import ml_collections
import numpy as np
from sklearn.neighbors import NearestNeighbors

from gan_jax import images as image_lib
from gan_jax.explore import loader
from gan_jax.explore.generate import generate
from gan_jax.explore import pictures
from gan_jax import errors
from gan_jax import cli
from gan_jax.data import loader as data_loader

SPACES = ("pixels", "discriminator")


def embed(model: loader.TrainedGAN, images: np.ndarray, space: str, batch_size: int = 256
          ) -> np.ndarray:
  """(N, F) float32 vectors whose Euclidean distances are the chosen space's distances."""
  if space == "pixels":
    return np.asarray(images, np.float32).reshape(len(images), -1) / 255.0
  if space == "discriminator":
    return model.embed(images, batch_size)
  raise errors.ExploreError(f"unknown --space {space!r}; use one of {', '.join(SPACES)}")


class Neighbours(NamedTuple):
  indices: np.ndarray    # (num_samples, k) data indices, closest first
  distances: np.ndarray  # (num_samples, k)
  baseline: np.ndarray   # (num_baseline,) distances of data images to their nearest *other* image


def nearest(model: loader.TrainedGAN, samples: np.ndarray, data: np.ndarray, k: int,
            space: str = "pixels", batch_size: int = 256, num_baseline: int = 0,
            seed: int = 0) -> Neighbours:
  """Each sample's k nearest data images, and (for scale) `num_baseline` data-to-data distances.

  The baseline takes `num_baseline` data images (a seeded choice) and measures
  how far each is from its nearest other data image: samples much closer to
  the data than that are suspiciously close.
  """
  if samples.shape[1:] != data.shape[1:]:
    raise errors.ExploreError(f"training images are {data.shape[1:]} but samples are "
                                f"{samples.shape[1:]}; load the data at the model's resolution")
  if not 1 <= k <= len(data):
    raise errors.ExploreError(f"--k must be between 1 and the {len(data)} training images, "
                                f"got {k}")
  data_vectors = embed(model, data, space, batch_size)
  index = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(data_vectors)
  distances, indices = index.kneighbors(embed(model, samples, space, batch_size))
  baseline = np.zeros(0)
  num_baseline = min(num_baseline, len(data) - 1)
  if num_baseline > 0:
    chosen = np.random.default_rng(seed).choice(len(data), num_baseline, replace=False)
    # Two neighbours: the image itself (distance 0) and its nearest other image.
    baseline = index.kneighbors(data_vectors[chosen], n_neighbors=2)[0][:, 1]
  return Neighbours(indices, distances, baseline)


def comparison_grid(samples: np.ndarray, data: np.ndarray, indices: np.ndarray, factor: int = 1
                    ) -> np.ndarray:
  """One uint8 picture: a row per sample, the sample then its neighbours."""
  rows = [np.concatenate([sample[None], data[row]]) for sample, row in zip(samples, indices)]
  tiles = pictures.zoom(np.concatenate(rows), factor)
  return image_lib.make_grid(tiles, columns=indices.shape[1] + 1)


def training_faces(data: ml_collections.ConfigDict, resolution: int, path: str,
                   limit: int | None = None, crop: str | None = None) -> np.ndarray:
  """The faces at `path` that a run with config.data `data` trained on, split as training split
  them: data.holdout's faces (or a prepared directory's heldout.npy) are never searched.

  `limit` and `crop` replace data.limit and data.crop when given. A raw folder
  is read from (or prepared into) the cache that training uses.
  """
  limit = limit if limit is not None else (data.limit or None)
  return data_loader.data_split(path, resolution, crop or data.crop, data.cache_dir or None, limit,
                                holdout=data.holdout,
                                hint=data_loader.COMMAND_HINT).training


def run(args: argparse.Namespace) -> None:
  model = loader.load(args.workdir, args.step, discriminator=args.space == "discriminator")
  print(loader.describe(model, args.workdir))
  data_path = args.data or model.config.data.path
  if not data_path:
    raise errors.ExploreError("the run's config names no data.path; give --data PATH")
  data = np.asarray(training_faces(model.config.data, model.resolution, data_path, args.limit,
                                   args.crop))
  print(f"data: {len(data)} images from {data_path}")
  samples, _ = generate(model, args.seed, args.num, args.truncation, args.batch_size)
  result = nearest(model, samples, data, args.k, args.space, num_baseline=args.baseline,
                   seed=args.seed)
  out = pathlib.Path(args.out)
  image_lib.save_png(out, comparison_grid(samples, data, result.indices, args.zoom))
  # Pixel distances also as RMS per value in [0, 1], comparable across resolutions.
  scale = np.sqrt(samples[0].size) if args.space == "pixels" else 1.0
  unit = " (RMS per pixel value)" if args.space == "pixels" else ""
  for i, (row, dist) in enumerate(zip(result.indices, result.distances)):
    print(f"sample {i}: nearest training image #{row[0]} at {dist[0] / scale:.4f}{unit}")
  if len(result.baseline):
    median, closest = np.median(result.baseline) / scale, result.baseline.min() / scale
    print(f"for scale: {len(result.baseline)} training images lie at median {median:.4f} "
          f"(min {closest:.4f}) from their nearest other training image; samples much closer "
          "than that are near-copies")
  report = {"workdir": str(args.workdir), "step": model.step, "data": str(data_path),
            "space": args.space, "seed": args.seed, "indices": result.indices.tolist(),
            "distances": result.distances.tolist(), "baseline": result.baseline.tolist(),
            "rms_scale": float(scale)}
  json_path = out.with_suffix(".json")
  json_path.write_text(json.dumps(report, indent=2) + "\n")
  print(f"wrote {out} and {json_path}")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.nearest", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_checkpoint_arguments(parser)
  parser.add_argument("--data", default=None,
                      help="training images: a folder, a prepared directory or a uint8 .npy "
                           "(default: the run's data.path), split as the run's data.holdout "
                           "split them: the held-out faces are not searched")
  parser.add_argument("--limit", type=cli.positive_int, default=None,
                      help="use only the first N training images (default: the run's data.limit)")
  parser.add_argument("--crop", choices=("center", "celeba", "none"), default=None,
                      help="crop of the training images (default: the run's data.crop)")
  parser.add_argument("--num", type=cli.positive_int, default=8,
                      help="how many generated samples (rows)")
  parser.add_argument("--seed", type=int, default=0, help="latent seed, as in gan_jax.generate")
  parser.add_argument("--truncation", type=float, default=None, help="as in gan_jax.generate")
  parser.add_argument("--k", type=int, default=5, help="neighbours per sample (columns after it)")
  parser.add_argument("--baseline", type=int, default=200,
                      help="also measure how far this many training images are from their nearest "
                           "other training image, for scale (0 = skip)")
  parser.add_argument("--space", choices=SPACES, default="pixels",
                      help="distance: raw pixels or the discriminator's features (see above)")
  parser.add_argument("--out", default="nearest.png",
                      help="the PNG to write; the indices and distances go to the same name .json")
  parser.add_argument("--zoom", type=cli.positive_int, default=2,
                      help="upscale the picture by this integer factor (nearest neighbour)")
  return parser


def main(argv: list[str] | None = None) -> int:
  return cli.run_cli(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
