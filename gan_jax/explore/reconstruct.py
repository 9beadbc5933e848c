"""Reconstruct real faces through a VAE-GAN: encoder, then generator.

  python -m gan_jax.reconstruct --workdir runs/vaegan32 --images faces/ --out recon/
  python -m gan_jax.reconstruct --workdir runs/vaegan32 --images a.jpg,b.jpg --out recon/

--images is a folder of photos, comma-separated photo files, or a uint8 .npy
of (N, R, R, 3) faces at the model's resolution R. Photos are cropped (the
run's data.crop unless --crop) and resized as the training faces were. Each
face is encoded to the mean of q(z|x) and decoded by G (its EMA weights when
the run kept them).

Writes into --out: reconstructions.png (rows of --columns inputs, each followed
by the row of their reconstructions), reconstructions.npy (uint8 (N, R, R, 3),
in input order), latents.npy (the encoder's means, (N, latent_dim): usable by
`gan_jax.interpolate --latents` after splitting) and prints the pixel MSE.
Needs a run of model.name=vaegan (configs/vaegan32.py).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from gan_jax import cli
from gan_jax import images as image_lib
from gan_jax.explore import loader
from gan_jax.explore import pictures


def reconstruct(model: loader.TrainedGAN, images: np.ndarray, batch_size: int = 64
                ) -> tuple[np.ndarray, np.ndarray]:
  """(float reconstructions in [-1, 1], encoder means (N, latent_dim)) of uint8 faces."""
  latents = model.encode(images, batch_size)
  return model.generate(latents, batch_size), latents


def pixel_mse(images: np.ndarray, reconstructions: np.ndarray) -> float:
  """Mean squared error in [-1, 1] pixel units."""
  return float(np.mean((image_lib.to_float(images) - image_lib.to_float(reconstructions)) ** 2))


def comparison_grid(images: np.ndarray, reconstructions: np.ndarray, columns: int,
                    zoom: int = 1) -> np.ndarray:
  """A grid whose rows alternate: `columns` inputs, then their reconstructions."""
  images, reconstructions = image_lib.to_uint8(images), image_lib.to_uint8(reconstructions)
  rows = []
  for start in range(0, len(images), columns):
    for part in (images, reconstructions):
      row = part[start:start + columns]
      pad = np.full((columns - len(row),) + row.shape[1:], 255, np.uint8)  # a short last row
      rows.append(np.concatenate([row, pad]))
  return image_lib.make_grid(pictures.zoom(np.concatenate(rows), zoom), columns=columns)


def run(args: argparse.Namespace) -> None:
  model = loader.load(args.workdir, args.step, encoder=True)
  print(loader.describe(model, args.workdir))
  _, images = pictures.load_photos(args.images, model.resolution,
                                   args.crop or model.config.data.crop)
  reconstructions, latents = reconstruct(model, images, args.batch_size)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  image_lib.save_png(out / "reconstructions.png",
                     comparison_grid(images, reconstructions, min(args.columns, len(images)),
                                     args.zoom))
  np.save(out / "reconstructions.npy", image_lib.to_uint8(reconstructions))
  np.save(out / "latents.npy", latents)
  print(f"{len(images)} face(s): pixel MSE {pixel_mse(images, reconstructions):.5f} "
        "(images in [-1, 1])")
  print(f"wrote {out / 'reconstructions.png'}, reconstructions.npy and latents.npy")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.reconstruct", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_checkpoint_arguments(parser)
  parser.add_argument("--images", required=True,
                      help="a folder of photos, photo files a.jpg,b.jpg, or a uint8 .npy")
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--crop", choices=("center", "celeba", "none"), default=None,
                      help="how to crop photos to a square (default: the run's data.crop)")
  parser.add_argument("--columns", type=cli.positive_int, default=8,
                      help="faces per row of the grid")
  parser.add_argument("--zoom", type=cli.positive_int, default=2,
                      help="upscale the grid by this integer factor (nearest neighbour)")
  return parser


def main(argv: list[str] | None = None) -> int:
  return cli.run_cli(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
