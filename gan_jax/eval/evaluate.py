"""Evaluate generated faces against real ones.

  # FID and KID (add --precision_recall for Kynkäänniemi et al.'s metrics):
  python -m gan_jax.evaluate fid REAL FAKE
  # 1-NN two-sample accuracy plus t-SNE/PCA plots of the embeddings:
  python -m gan_jax.evaluate embed REAL FAKE --out DIR [--features inception|pixels]
  # FID and KID of a training checkpoint against the faces it was trained on:
  python -m gan_jax.evaluate run --workdir W [--step N | --best] --num_samples 10000

REAL and FAKE are each a folder of images or a prepared uint8 (N, H, W, 3)
.npy. FID/KID use the standard TF Inception-v3 pool3 features; fetch its
weights once with `python -m gan_jax.metrics.weights fetch`. `run` writes
W/eval/metrics_step_N.json (metrics_step_N_pixels.json with --features pixels);
when the run set faces aside (data.holdout, prepare --holdout, or --heldout N)
it also measures against those held-out faces and the real-vs-real floor.
See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys


from gan_jax import checkpoint
from gan_jax import cli, streams
from gan_jax.eval import evaluator as evaluator_lib
from gan_jax.explore import loader
from gan_jax.metrics import embedding
from gan_jax.metrics import fid
from gan_jax.metrics import weights
from gan_jax.data import loader as data_loader
from gan_jax.training import ema_stats
from gan_jax.errors import CheckpointError, ConfigError, DataError

FEATURE_NAMES = {"inception": "Inception pool3 features", "pixels": "pixels"}


def print_metrics(metrics: dict[str, float]) -> None:
  print(f"FID: {metrics['fid']:.4f}")
  print(f"KID: {metrics['kid']:.6f} ± {metrics['kid_std']:.6f}")
  if "precision" in metrics:
    print(f"precision: {metrics['precision']:.4f}  recall: {metrics['recall']:.4f}")


def run_fid(args) -> None:
  stats = [fid.dataset_statistics(path, args.resolution, args.limit, args.batch_size,
                                  use_cache=not args.no_cache) for path in (args.real, args.fake)]
  for path, stat in zip((args.real, args.fake), stats):
    print(f"{path}: {len(stat.features)} images")
  metrics = evaluator_lib.feature_metrics(stats[0], stats[1], args.kid_subsets, args.kid_subset_size,
                            args.precision_recall)
  metrics.update(num_real=len(stats[0].features), num_fake=len(stats[1].features))
  if args.one_nn:
    metrics["one_nn_accuracy"], count = evaluator_lib.one_nn_equal_sets(stats[0].features, stats[1].features)
    metrics["one_nn_per_set"] = count
  print_metrics(metrics)
  if args.one_nn:
    print(f"1-NN accuracy ({count} + {count}): {metrics['one_nn_accuracy']:.4f} "
          "(0.5 = indistinguishable)")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")


def run_embed(args) -> None:
  if args.features == "inception":
    real, fake = (
        fid.dataset_statistics(path, args.resolution, args.limit, args.batch_size).features
        for path in (args.real, args.fake))
  else:
    real, fake = (embedding.pixel_embeddings(
        data_loader.load_image_array(path, args.resolution, crop="none", limit=args.limit))
        for path in (args.real, args.fake))
    if real.shape[1] != fake.shape[1]:
      raise DataError(f"pixel embeddings need images of one size, got {real.shape[1]} and "
                              f"{fake.shape[1]} values per image; give --resolution")
  accuracy, count = evaluator_lib.one_nn_equal_sets(real, fake)
  real, fake = real[:count], fake[:count]  # the plots show the sets the test compared
  print(f"1-NN accuracy ({args.features}, {count} + {count}): {accuracy:.4f} "
        "(0.5 = indistinguishable, 1.0 = separable)")
  plots = embedding.write_embedding_plots(real, fake, args.out, seed=args.seed,
                                          label=FEATURE_NAMES[args.features])
  result = {"one_nn_accuracy": accuracy, "num_per_set": count, "features": args.features,
            "real": str(args.real), "fake": str(args.fake),
            "plots": {name: str(path) for name, path in plots.items()}}
  json_path = pathlib.Path(args.out) / "embedding.json"
  json_path.write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {json_path}, {plots['tsne']}, {plots['pca']}")


def evaluate_checkpoint(workdir: str | pathlib.Path, step: int | None = None,
                        num_samples: int = 10_000, features: str = "inception",
                        data: str | None = None, num_real: int | None = None,
                        batch_size: int = 250, seed: int = streams.EVAL_SEED,
                        best: bool = False, kid_subsets: int = 100, kid_subset_size: int = 1000,
                        precision_recall: bool = False, one_nn: bool = False,
                        use_cache: bool = True, heldout: int | None = None,
                        ema_batch_stats: str | None = None) -> tuple[dict, pathlib.Path]:
  """Metrics of a checkpoint's generator against its training images, and the JSON written.

  Images come from the latents (seed, 0..num_samples-1), as `generate --seed`;
  the real side is the config's data (or `data`), read as training reads it.
  When the run has held-out faces (`heldout` None: its data.holdout or a
  directory prepared with --holdout; N: the last N images of its data, e.g.
  1000 for a data.limit=5000 run on 6,000 faces; 0: none), the result also
  holds fid_heldout, kid_heldout, kid_std_heldout, the floor
  fid_floor_heldout, kid_floor_heldout, kid_std_floor_heldout (the first
  num_floor training faces vs the held-out ones) and num_heldout, num_floor.
  """
  evaluator_lib.check_options(num_samples, features)
  if batch_size < 1:
    raise ConfigError(f"--batch={batch_size} must be at least 1")
  workdir = pathlib.Path(workdir)
  source = workdir / evaluator_lib.BEST_DIR if best else workdir
  if best and not (source / checkpoint.CHECKPOINT_DIR).is_dir():
    raise CheckpointError(f"no best checkpoint in {source}: training keeps one with "
                     "--config.eval.every=N (and eval.keep_best, the default)")
  # A clear error when there is none; ema_batch_stats (None: the run's) as loader.load takes it.
  model = loader.load(source, step, ema_batch_stats=ema_batch_stats)
  config = model.config
  evaluator = evaluator_lib.Evaluator.for_data(
      config.data, num_samples, features, batch_size, model.latent_dim, num_real=num_real,
      path=data, seed=seed, use_cache=use_cache, heldout=heldout)
  metrics = evaluator.evaluate(model.generate, kid_subsets, kid_subset_size, precision_recall,
                               one_nn)
  result = {"step": model.step, "checkpoint": "best" if best else "saved",
            "workdir": str(workdir), "num_samples": num_samples, "num_real": evaluator.num_real,
            "features": features, "fid": metrics.pop("fid"), "kid_mean": metrics.pop("kid"),
            "kid_std": metrics.pop("kid_std"), **metrics}
  if evaluator.heldout is not None:
    result.update(num_heldout=evaluator.num_heldout, num_floor=evaluator.num_floor)
  result.update(seed=seed, ema=model.uses_ema, ema_batch_stats=model.gan.ema_batch_stats,
                resolution=config.data.resolution,
                data=str(data or config.data.path),
                date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
  suffix = "" if features == "inception" else f"_{features}"
  suffix += f"_ema_{ema_batch_stats}" if ema_batch_stats else ""  # asked for, not the run's
  path = workdir / "eval" / f"metrics_step_{model.step}{suffix}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(result, indent=2) + "\n")
  return result, path


def run_checkpoint(args) -> None:
  result, path = evaluate_checkpoint(
      args.workdir, args.step, args.num_samples, args.features, args.data, args.num_real,
      args.batch, args.seed, args.best, args.kid_subsets, args.kid_subset_size,
      args.precision_recall, args.one_nn, use_cache=not args.no_cache, heldout=args.heldout,
      ema_batch_stats=args.ema_batch_stats)
  features = ("Inception pool3 features" if result["features"] == "inception" else
              "random projections of the pixels")
  print(f"{path.parent.parent}: step {result['step']}{' (best)' if args.best else ''}, "
        f"{result['num_samples']} samples vs {result['num_real']} real images, {features}")
  print_metrics({"fid": result["fid"], "kid": result["kid_mean"], "kid_std": result["kid_std"],
                 **{name: result[name] for name in ("precision", "recall") if name in result}})
  if "one_nn_accuracy" in result:
    print(f"1-NN accuracy: {result['one_nn_accuracy']:.4f} (0.5 = indistinguishable)")
  if "fid_heldout" in result:
    print(f"held-out ({result['num_samples']} samples vs {result['num_heldout']} faces the run "
          f"never saw): FID {result['fid_heldout']:.4f}, KID {result['kid_heldout']:.6f} ± "
          f"{result['kid_std_heldout']:.6f}")
    print(f"floor ({result['num_floor']} training faces vs the {result['num_heldout']} held-out "
          f"ones): FID {result['fid_floor_heldout']:.4f}, KID {result['kid_floor_heldout']:.6f} ± "
          f"{result['kid_std_floor_heldout']:.6f}")
  if result["features"] != "inception" or result["num_samples"] < 10_000:
    print("note: only Inception features and >= 10000 samples give FIDs comparable to published "
          "ones (docs/evaluation.md)")
  print(f"wrote {path}")


COMMANDS = {"fid": run_fid, "embed": run_embed, "run": run_checkpoint}


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("real", help="real images: a folder of images or a uint8 (N, H, W, 3) .npy")
  parser.add_argument("fake", help="generated images: a folder of images or a uint8 .npy")
  parser.add_argument("--resolution", type=int, default=None,
                      help="resize images to this square size when loading (default: "
                           "keep; all images in a folder must then share one size)")
  parser.add_argument("--limit", type=int, default=None, help="use at most this many per set")
  parser.add_argument("--batch_size", type=int, default=50, help="Inception batch size")


def _add_metric_arguments(parser: argparse.ArgumentParser) -> None:
  """The options `fid` and `run` share: KID, precision/recall and the 1-NN test."""
  parser.add_argument("--kid_subsets", type=int, default=100, help="KID subsets")
  parser.add_argument("--kid_subset_size", type=int, default=1000, help="KID subset size")
  parser.add_argument("--precision_recall", action="store_true",
                      help="also compute improved precision/recall (k=3)")
  parser.add_argument("--one_nn", action="store_true",
                      help="also the 1-NN leave-one-out accuracy of the features "
                           "(on equally many real and generated images)")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.evaluate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

  defaults = argparse.ArgumentDefaultsHelpFormatter
  fid_parser = commands.add_parser("fid", help="FID and KID between two image sets",
                                   formatter_class=defaults)
  _add_data_arguments(fid_parser)
  _add_metric_arguments(fid_parser)
  fid_parser.add_argument("--no_cache", action="store_true",
                          help="do not read or write cached features under "
                               f"{weights.cache_dir() / 'fid_stats'}")
  fid_parser.add_argument("--json", help="also write the metrics to this JSON file")

  embed_parser = commands.add_parser("embed", help="1-NN two-sample accuracy and t-SNE/PCA plots",
                                     formatter_class=defaults)
  _add_data_arguments(embed_parser)
  embed_parser.add_argument("--out", required=True, help="folder for embedding.json and PNGs")
  embed_parser.add_argument("--features", choices=("inception", "pixels"), default="inception",
                            help="embed with Inception pool3 features or raw pixels")
  embed_parser.add_argument("--seed", type=int, default=0, help="seed of t-SNE and PCA")

  run_parser = commands.add_parser(
      "run", formatter_class=defaults,
      help="FID/KID of a training checkpoint's samples against its training images")
  run_parser.add_argument("--workdir", required=True, help="the training --workdir")
  which = run_parser.add_mutually_exclusive_group()
  which.add_argument("--step", type=int, default=None,
                     help="checkpoint step; the latest when not given")
  which.add_argument("--best", action="store_true",
                     help="the lowest-FID checkpoint kept by periodic evaluation (WORKDIR/best)")
  run_parser.add_argument("--num_samples", type=int, default=10_000,
                          help="generated images (10000 or 50000 for published comparisons)")
  run_parser.add_argument("--data", default=None,
                          help="real images (default: the run's data.path, data.limit, "
                               "resolution and crop)")
  run_parser.add_argument("--num_real", type=int, default=None,
                          help="use at most this many real images; all when not given")
  run_parser.add_argument("--heldout", type=int, default=None,
                          help="held-out faces: the last N images of the run's data (refused "
                               "if it trained on any); 0: none; default: the run's own "
                               "(data.holdout or a directory prepared with --holdout)")
  run_parser.add_argument("--ema_batch_stats", choices=ema_stats.MODES, default=None,
                          help="batch statistics of the EMA generator: live (G's running ones) "
                               "or recompute (its own); default: the run's "
                               "train.ema_batch_stats")
  run_parser.add_argument("--batch", type=int, default=250,
                          help="images per generator and Inception call")
  run_parser.add_argument("--features", choices=evaluator_lib.FEATURES, default="inception",
                          help="Inception pool3 (FID) or random pixel projections (cheap, "
                               "not comparable to published numbers)")
  run_parser.add_argument("--seed", type=int, default=streams.EVAL_SEED,
                          help="latent seed: the images of `generate --seed S`")
  _add_metric_arguments(run_parser)
  run_parser.add_argument("--no_cache", action="store_true",
                          help="do not read or write cached real-image Inception features")
  return parser


def main(argv: list[str] | None = None) -> int:
  # Besides errors.UserError: the metrics' ValueErrors (too few images for KID,
  # precision/recall or the 1-NN test).
  return cli.run_cli(build_parser(), lambda args: COMMANDS[args.command](args), argv,
                     also=(ValueError,))


if __name__ == "__main__":
  sys.exit(main())
