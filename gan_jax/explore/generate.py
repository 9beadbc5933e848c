"""Generate faces from a trained checkpoint.

  python -m gan_jax.generate --workdir runs/faces --num 64 --seed 0 --out samples/ --grid

Writes one PNG per image (seed0000_00000.png, ...) and, with --grid, one
grid.png of them all. Only the generator is read from the checkpoint (its EMA
weights when the run kept them), never the optimiser state. Image i of
--seed S comes from the latent (S, i) (see gan_jax/explore/latents.py), so the same
flags always give byte-identical files, and --num only adds or drops images at
the end. --truncation t resamples latent components outside [-t, t] (a
truncated normal): smaller t gives more typical, less varied faces.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from gan_jax import images as image_lib
from gan_jax.explore import loader
from gan_jax.explore import pictures
from gan_jax.explore import latents as latent_lib
from gan_jax import errors
from gan_jax import cli
from gan_jax.monitor import progress
from gan_jax.training import ema_stats


def generate(model: loader.TrainedGAN, seed: int, num: int, truncation: float | None = None,
             batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 images (num, H, W, 3), their latents (num, latent_dim)) for `seed`."""
  if num < 1:
    raise errors.ExploreError(f"--num must be >= 1, got {num}")
  z = latent_lib.latents(seed, num, model.latent_dim, truncation)
  # A batch at a time for the bar on a terminal; the same images (each batch is padded alike).
  chunks = []
  with progress.bar(num, "generating") as bar:
    for start in range(0, num, batch_size):
      chunks.append(image_lib.to_uint8(model.generate(z[start:start + batch_size], batch_size)))
      bar.update(len(chunks[-1]))
  return np.concatenate(chunks), z


def image_name(seed: int, index: int) -> str:
  return f"seed{seed:04d}_{index:05d}.png"


def run(args: argparse.Namespace) -> None:
  model = loader.load(args.workdir, args.step, ema_batch_stats=args.ema_batch_stats)
  print(loader.describe(model, args.workdir))
  images, z = generate(model, args.seed, args.num, args.truncation, args.batch_size)
  out = pathlib.Path(args.out)
  written = []
  if not args.grid_only:
    with progress.bar(len(images), "writing PNGs") as bar:
      for i, image in enumerate(images):
        written.append(pictures.save_png(out / image_name(args.seed, i), image, args.zoom))
        bar.update()
  if args.grid or args.grid_only:
    grid = image_lib.make_grid(pictures.zoom(images, args.zoom), columns=args.columns)
    written.append(image_lib.save_png(out / "grid.png", grid))
  if args.save_latents:
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "latents.npy", z)
    written.append(out / "latents.npy")
  if args.npy:
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "images.npy", images)
    written.append(out / "images.npy")
  print(f"wrote {len(written)} file(s) to {out}")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.generate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_checkpoint_arguments(parser)
  parser.add_argument("--num", type=cli.positive_int, default=64, help="how many images")
  parser.add_argument("--seed", type=int, default=0,
                      help="latent seed; image i uses latent (seed, i)")
  parser.add_argument("--truncation", type=float, default=None,
                      help="resample latent components with |z| > this (e.g. 0.7); default: none")
  parser.add_argument("--ema_batch_stats", choices=ema_stats.MODES, default=None,
                      help="batch statistics the EMA generator samples with: live (G's running "
                           "ones) or recompute (its own); default: the run's "
                           "train.ema_batch_stats")
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--grid", action="store_true", help="also write grid.png of all images")
  parser.add_argument("--grid_only", action="store_true",
                      help="write only grid.png, no single-image PNGs")
  parser.add_argument("--columns", type=cli.positive_int, default=None,
                      help="grid width (default: ~square)")
  parser.add_argument("--zoom", type=cli.positive_int, default=1,
                      help="upscale written pictures by this integer factor (nearest neighbour)")
  parser.add_argument("--save_latents", action="store_true",
                      help="also write latents.npy (num, latent_dim), usable by interpolate "
                           "--latents")
  parser.add_argument("--npy", action="store_true",
                      help="also write images.npy, a uint8 (num, H, W, 3) array at the model's "
                           "resolution (e.g. for gan_jax.evaluate)")
  return parser


def main(argv: list[str] | None = None) -> int:
  return cli.run_cli(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
