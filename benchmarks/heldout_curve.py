"""Held-out FID of training runs' checkpoints: the numbers behind docs/results.md's 32 px CPU comparison.

For every run and step asked for, it samples `--num_samples` faces from that
checkpoint (seed 0, the sampler `GAN.sample` picks) and measures FID and KID
(Inception pool3) against two reference sets of equal size drawn from the
faces the runs were prepared from: the held-out faces (the last `--holdout`
images, which training never saw) and as many training faces (the first
images). It also reports the real-vs-real floor of the same sizes: the
training reference against the held-out faces. Features are cached in
`--cache` by (run, step, sampler), so a rerun only measures what is new.

  python benchmarks/heldout_curve.py --faces ../shared/data/celeba6k --resolution 32 \
      --crop celeba --runs /tmp/r32/celeba32,/tmp/r32/faces32_best --steps 1140,2280,5700 \
      --num_samples 1000 --json curve.json

Each result row also carries the images seen (step x batch) and the training
seconds to that step, read from the run's metrics.jsonl. For a run with an
encoder (a VAE-GAN) the row adds its reconstructions of the held-out faces:
pixel MSE, the mean Inception-feature distance between each face and its
reconstruction, and FID/KID of the reconstructions against the held-out faces.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sys

import numpy as np

from gan_jax import checkpoint
from gan_jax import images as image_lib
from gan_jax.data import loader as data_loader
from gan_jax.explore import generate as generate_lib
from gan_jax.explore import loader
from gan_jax.explore import reconstruct as reconstruct_lib
from gan_jax.metrics import fid as fid_lib
from gan_jax.metrics import inception


def cached_features(cache: pathlib.Path, key: str, images_fn) -> np.ndarray:
  path = cache / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".npy")
  if path.is_file():
    return np.load(path)
  features = inception.extract_features(images_fn(), batch_size=100)
  cache.mkdir(parents=True, exist_ok=True)
  np.save(path, features)
  return features


def seconds_to_step(workdir: pathlib.Path, step: int) -> float | None:
  """Seconds of training steps up to `step`: the sum of metrics.jsonl's per-interval
  mean step times times the interval's steps (compilation and the first interval,
  which has no step time, excluded; None if nothing was logged)."""
  path = workdir / "metrics.jsonl"
  if not path.is_file():
    return None
  seconds, previous = 0.0, None
  for line in path.read_text().splitlines():
    record = json.loads(line)
    if "step" not in record or record["step"] > step:
      continue
    if "step_time" in record and previous is not None:
      seconds += record["step_time"] * (record["step"] - previous)
    previous = record["step"]
  return seconds or None


def measure(fake: np.ndarray, reference: np.ndarray) -> dict:
  fid = fid_lib.fid_from_statistics(fid_lib.statistics_of(fake), fid_lib.statistics_of(reference))
  kid, kid_std = fid_lib.kid(fake, reference)
  return {"fid": fid, "kid": kid, "kid_std": kid_std}


def measure_reconstructions(model: loader.TrainedGAN, heldout: np.ndarray,
                            heldout_features: np.ndarray, cache: pathlib.Path, key: str) -> dict:
  """How well the run's encoder and decoder reproduce faces training never saw."""
  reconstructions = image_lib.to_uint8(reconstruct_lib.reconstruct(model, heldout)[0])
  features = cached_features(cache, key, lambda: reconstructions)
  per_face = np.linalg.norm(features - heldout_features, axis=1)
  return {"pixel_mse": reconstruct_lib.pixel_mse(heldout, reconstructions),
          "feature_distance": float(per_face.mean()),
          "feature_distance_between_faces": float(np.linalg.norm(
              heldout_features - np.roll(heldout_features, 1, axis=0), axis=1).mean()),
          **measure(features, heldout_features)}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--faces", required=True)
  parser.add_argument("--resolution", type=int, default=32)
  parser.add_argument("--crop", default="celeba")
  parser.add_argument("--holdout", type=int, default=1000)
  parser.add_argument("--runs", required=True, help="comma-separated workdirs")
  parser.add_argument("--steps", required=True, help="comma-separated checkpoint steps")
  parser.add_argument("--num_samples", type=int, default=1000)
  parser.add_argument("--ema_batch_stats", default="",
                      help="live | recompute: override the run's train.ema_batch_stats")
  parser.add_argument("--cache", default="/tmp/heldout_curve_cache")
  parser.add_argument("--heldout_reconstructions", action="store_true",
                      help="also measure the reconstructions of the held-out faces (VAE-GAN runs)")
  parser.add_argument("--json", default="")
  return parser


def check_checkpoints(parser: argparse.ArgumentParser, runs: list[pathlib.Path],
                      steps: list[int]) -> None:
  """Every checkpoint asked for must exist before minutes go into the reference features."""
  for workdir in runs:
    manager = checkpoint.make_manager(workdir, read_only=True)
    for step in steps:
      try:
        checkpoint.saved_steps(manager, step)
      except checkpoint.CheckpointError as error:
        parser.error(str(error))


def measure_checkpoint(args: argparse.Namespace, cache: pathlib.Path, workdir: pathlib.Path,
                       step: int, heldout: np.ndarray, heldout_features: np.ndarray,
                       train_features: np.ndarray, tag: str) -> dict:
  """One checkpoint's row: its samples against both references (and its reconstructions)."""
  n = args.num_samples
  model = loader.load(workdir, step, ema_batch_stats=args.ema_batch_stats or None,
                      encoder=args.heldout_reconstructions)
  sampler = f" {args.ema_batch_stats}" if args.ema_batch_stats else ""
  features = cached_features(
      cache, f"run {workdir.resolve()} {step} {n}{sampler}",
      lambda: generate_lib.generate(model, seed=0, num=n, batch_size=250)[0])
  row = {"run": workdir.name, "step": step, "ema_batch_stats": args.ema_batch_stats or "run's",
         "images_seen": step * model.config.train.batch_size,
         "train_seconds": seconds_to_step(workdir, step),
         "heldout": measure(features, heldout_features),
         "train": measure(features, train_features)}
  if args.heldout_reconstructions:
    row["reconstructions"] = measure_reconstructions(
        model, heldout, heldout_features, cache,
        f"reconstructions {workdir.resolve()} {step} {tag} {args.holdout}{sampler}")
    print(f"{row['run']} step {step}: held-out reconstructions "
          f"{json.dumps(row['reconstructions'])}", flush=True)
  return row


def main(argv=None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  runs = [pathlib.Path(run) for run in args.runs.split(",")]
  steps = [int(s) for s in args.steps.split(",")]
  check_checkpoints(parser, runs, steps)

  cache = pathlib.Path(args.cache)
  faces = data_loader.load_image_array(args.faces, resolution=args.resolution, crop=args.crop)
  heldout = faces[len(faces) - args.holdout:]
  n = args.num_samples
  if n > len(faces) - args.holdout:
    parser.error("--num_samples exceeds the training faces")
  tag = f"{args.faces}:{args.resolution}:{args.crop}:{len(faces)}"
  heldout_features = cached_features(cache, f"heldout {tag} {args.holdout}", lambda: heldout)
  train_features = cached_features(cache, f"train {tag} {n}", lambda: faces[:n])
  floor = measure(train_features, heldout_features)
  print(f"floor (training {n} vs held-out {args.holdout}): FID {floor['fid']:.2f}", flush=True)
  rows = []
  for workdir in runs:
    for step in steps:
      row = measure_checkpoint(args, cache, workdir, step, heldout, heldout_features,
                               train_features, tag)
      rows.append(row)
      print(f"{row['run']} step {step}: FID held-out {row['heldout']['fid']:.2f}, "
            f"training {row['train']['fid']:.2f}", flush=True)
  result = {"num_samples": n, "holdout": args.holdout, "floor": floor, "rows": rows,
            "faces": args.faces, "resolution": args.resolution, "crop": args.crop}
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
