"""Latent walks and interpolation grids from a trained checkpoint.

  # A looping walk (first keyframe == last) as a GIF: 3 segments x 30 frames.
  python -m gan_jax.interpolate --workdir runs/faces --seeds 3,7,11,3 --frames 30 --out walk.gif
  # One row per consecutive keyframe pair, 8 columns from one end to the other:
  python -m gan_jax.interpolate --workdir runs/faces --seeds 3,7,11 --frames 8 --out grid.png
  # Between projected faces (latents written by gan_jax.project):
  python -m gan_jax.interpolate --workdir runs/faces --latents a.npy,b.npy --out ab.gif
  # Between two real photos: through the encoder of a VAE-GAN run, else projected:
  python -m gan_jax.interpolate --workdir runs/vaegan32 --images a.jpg,b.jpg --out ab.gif

Keyframe --seeds S is the latent of the first image of `generate --seed S`.
The output's extension picks the kind: .gif or .mp4 (a walk with --frames
frames per segment; a loop has no repeated last frame, otherwise the last
keyframe ends it) or .png (a grid; --frames columns, both ends included).
MP4 needs an ffmpeg backend for imageio: `pip install imageio-ffmpeg`.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import imageio.v2 as imageio_v2
import imageio.v3 as iio
import numpy as np

from gan_jax import images as image_lib
from gan_jax.explore import loader
from gan_jax.explore import pictures
from gan_jax.explore import project
from gan_jax.explore import latents as latent_lib
from gan_jax import errors
from gan_jax import cli

OUTPUT_KINDS = (".gif", ".mp4", ".png")
TRUNCATION_WITH_LATENTS = ("warning: --truncation has no effect with --latents: it truncates "
                           "the --seeds latents only; the .npy latents are used as they are")


def image_latents(model: loader.TrainedGAN, image_files, crop: str | None = None,
                  project_steps: int = 500) -> np.ndarray:
  """(K, latent_dim) latents of real photos: the encoder's means for a VAE-GAN (loaded with
  its encoder), else each photo projected into G's latent space (gan_jax.project)."""
  _, photos = pictures.load_photos(image_files, model.resolution,
                                   crop or model.config.data.crop)
  if model.has_encoder:
    return model.encode(photos)
  return np.stack([project.project(model, photo, steps=project_steps).latent
                   for photo in photos])


def keyframes(model: loader.TrainedGAN, seeds=None, latent_files=None,
              truncation: float | None = None, image_files=None, crop: str | None = None,
              project_steps: int = 500) -> np.ndarray:
  """(K, latent_dim) keyframe latents from seeds, from .npy files or from photos."""
  if sum(x is not None for x in (seeds, latent_files, image_files)) != 1:
    raise errors.ExploreError("give keyframes with exactly one of --seeds, --latents or --images")
  if image_files is not None:
    return image_latents(model, image_files, crop, project_steps)
  if seeds is not None:
    return latent_lib.seed_latents(seeds, model.latent_dim, truncation)
  return latent_lib.load_latents(latent_files, model.latent_dim)


def walk_frames(model: loader.TrainedGAN, keys: np.ndarray, frames: int, method: str,
                batch_size: int = 64) -> np.ndarray:
  """uint8 (F, H, W, 3) frames of the walk through `keys`."""
  return image_lib.to_uint8(model.generate(latent_lib.walk(keys, frames, method), batch_size))


def grid_rows(model: loader.TrainedGAN, keys: np.ndarray, columns: int, method: str,
              batch_size: int = 64) -> np.ndarray:
  """uint8 (pairs, columns, H, W, 3): one interpolation per consecutive keyframe pair."""
  z = latent_lib.pair_rows(keys, columns, method)
  images = image_lib.to_uint8(model.generate(z.reshape(-1, z.shape[-1]), batch_size))
  return images.reshape(z.shape[:2] + images.shape[1:])


def require_ffmpeg(path: pathlib.Path) -> None:
  try:
    import imageio_ffmpeg  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    raise errors.ExploreError(
        f"writing {path.name} needs an ffmpeg backend for imageio, which is not installed; "
        "run `pip install imageio-ffmpeg`, or write a .gif instead") from None


def write_video(path: pathlib.Path, frames: np.ndarray, fps: float) -> None:
  """Write frames as an endlessly looping GIF or as an MP4 (needs imageio-ffmpeg)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.suffix.lower() == ".gif":
    # The Pillow writer takes the frame duration in milliseconds; loop=0 loops forever.
    iio.imwrite(path, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    return
  require_ffmpeg(path)
  # macro_block_size=1 keeps small frames at their size instead of resizing them.
  imageio_v2.mimwrite(path, list(frames), format="FFMPEG", fps=fps, macro_block_size=1)


def run(args: argparse.Namespace) -> None:
  out = pathlib.Path(args.out)
  kind = out.suffix.lower()
  if kind not in OUTPUT_KINDS:
    raise errors.ExploreError(f"--out {out} must end in {', '.join(OUTPUT_KINDS)} "
                                "(a GIF or MP4 walk, or a PNG grid)")
  if kind == ".mp4":
    require_ffmpeg(out)  # before the model is loaded and run
  if args.latents and args.truncation is not None:
    print(TRUNCATION_WITH_LATENTS, file=sys.stderr)
  model = loader.load(args.workdir, args.step, encoder=None if args.images else False)
  print(loader.describe(model, args.workdir))
  if args.images:
    print(f"keyframes: {len(args.images)} photo(s), "
          + ("through the encoder" if model.has_encoder else
             f"projected ({args.project_steps} steps each)"))
  keys = keyframes(model, args.seeds, args.latents, args.truncation, args.images, args.crop,
                   args.project_steps)
  if kind == ".png":
    rows = grid_rows(model, keys, args.frames, args.method, args.batch_size)
    grid = image_lib.make_grid(pictures.zoom(rows.reshape((-1,) + rows.shape[2:]), args.zoom),
                               columns=args.frames)
    image_lib.save_png(out, grid)
    print(f"wrote {out}: {len(rows)} row(s) x {args.frames} columns ({args.method})")
    return
  frames = pictures.zoom(walk_frames(model, keys, args.frames, args.method, args.batch_size),
                         args.zoom)
  write_video(out, frames, args.fps)
  loop = " (loop)" if latent_lib.is_loop(keys) else ""
  print(f"wrote {out}: {len(frames)} frames{loop} at {args.fps:g} fps ({args.method})")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.interpolate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_checkpoint_arguments(parser)
  keys = parser.add_mutually_exclusive_group(required=True)
  keys.add_argument("--seeds", type=cli.int_list,
                    help="keyframe seeds, comma-separated, e.g. 3,7,11,3 (first == last: a loop)")
  keys.add_argument("--latents", type=cli.path_list,
                    help="keyframe latent .npy files, comma-separated (e.g. from gan_jax.project)")
  keys.add_argument("--images", type=cli.path_list,
                    help="keyframe photos, comma-separated: encoded by a VAE-GAN run's encoder, "
                         "else projected into G's latent space (as gan_jax.project)")
  parser.add_argument("--crop", choices=("center", "celeba", "none"), default=None,
                      help="how --images are cropped to a square (default: the run's data.crop)")
  parser.add_argument("--project_steps", type=cli.positive_int, default=500,
                      help="Adam steps per photo when --images are projected (no encoder)")
  parser.add_argument("--frames", type=cli.positive_int, default=30,
                      help="frames per keyframe segment (walk) or columns per row (grid)")
  parser.add_argument("--method", choices=latent_lib.INTERPOLATIONS, default="slerp",
                      help="slerp: along the sphere where Gaussian latents live; "
                           "lerp: the straight line")
  parser.add_argument("--truncation", type=float, default=None,
                      help="truncate the --seeds latents at this value (see gan_jax.generate)")
  parser.add_argument("--out", required=True,
                      help="walk.gif, walk.mp4 (needs imageio-ffmpeg) or grid.png")
  parser.add_argument("--fps", type=float, default=15.0, help="frames per second of a walk")
  parser.add_argument("--zoom", type=cli.positive_int, default=1,
                      help="upscale frames by this integer factor (nearest neighbour)")
  return parser


def main(argv: list[str] | None = None) -> int:
  return cli.run_cli(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
