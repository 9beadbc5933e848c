"""Evaluate generated faces against real ones.

  # FID and KID (add --precision_recall for Kynkäänniemi et al.'s metrics):
  python -m gan_jax.evaluate fid REAL FAKE
  # 1-NN two-sample accuracy plus t-SNE/PCA plots of the embeddings:
  python -m gan_jax.evaluate embed REAL FAKE --out DIR [--features inception|pixels]

REAL and FAKE are each a folder of images or a prepared uint8 (N, H, W, 3)
.npy. FID/KID use the standard TF Inception-v3 pool3 features; fetch its
weights once with `python -m gan_jax.metrics.weights fetch`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from gan_jax import prepare
from gan_jax.metrics import embedding
from gan_jax.metrics import fid
from gan_jax.metrics import weights

FEATURE_NAMES = {"inception": "Inception pool3 features", "pixels": "pixels"}


def feature_metrics(real: fid.Statistics, fake: fid.Statistics, kid_subsets: int = 100,
                    kid_subset_size: int = 1000,
                    with_precision_recall: bool = False) -> dict[str, float]:
  """FID, KID (and optionally precision/recall) of two sets' Inception statistics."""
  kid_mean, kid_std = fid.kid(real.features, fake.features, kid_subsets, kid_subset_size)
  metrics = {"fid": fid.fid_from_statistics(real, fake), "kid": kid_mean, "kid_std": kid_std}
  if with_precision_recall:
    metrics["precision"], metrics["recall"] = fid.precision_recall(real.features, fake.features)
  return metrics


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
  metrics = feature_metrics(stats[0], stats[1], args.kid_subsets, args.kid_subset_size,
                            args.precision_recall)
  print_metrics(metrics)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")


def run_embed(args) -> None:
  if args.features == "inception":
    real, fake = (
        fid.dataset_statistics(path, args.resolution, args.limit, args.batch_size).features
        for path in (args.real, args.fake))
  else:
    real, fake = (embedding.pixel_embeddings(
        prepare.load_image_array(path, args.resolution, crop="none", limit=args.limit))
        for path in (args.real, args.fake))
    if real.shape[1] != fake.shape[1]:
      raise prepare.DataError(f"pixel embeddings need images of one size, got {real.shape[1]} and "
                              f"{fake.shape[1]} values per image; give --resolution")
  # The 1-NN test is only unbiased with equally many samples per set.
  count = min(len(real), len(fake))
  real, fake = real[:count], fake[:count]
  accuracy = embedding.one_nn_accuracy(real, fake)
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


# `run --workdir DIR` (to be added): sample uint8 images from a training
# checkpoint, take the real images from its config, then reuse the code
# above: `fid.dataset_statistics` for the real side, `inception.extract_features`
# for the samples (`fid.statistics_of` them) and `feature_metrics` /
# `print_metrics` for the report.
# Register its parser in `build_parser` and its function in COMMANDS.
COMMANDS = {"fid": run_fid, "embed": run_embed}


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("real", help="real images: a folder of images or a uint8 (N, H, W, 3) .npy")
  parser.add_argument("fake", help="generated images: a folder of images or a uint8 .npy")
  parser.add_argument("--resolution", type=int, default=None,
                      help="resize images to this square size when loading (default: "
                           "keep; all images in a folder must then share one size)")
  parser.add_argument("--limit", type=int, default=None, help="use at most this many per set")
  parser.add_argument("--batch_size", type=int, default=50, help="Inception batch size")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.evaluate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

  defaults = argparse.ArgumentDefaultsHelpFormatter
  fid_parser = commands.add_parser("fid", help="FID and KID between two image sets",
                                   formatter_class=defaults)
  _add_data_arguments(fid_parser)
  fid_parser.add_argument("--kid_subsets", type=int, default=100, help="KID subsets")
  fid_parser.add_argument("--kid_subset_size", type=int, default=1000, help="KID subset size")
  fid_parser.add_argument("--precision_recall", action="store_true",
                          help="also compute improved precision/recall (k=3)")
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
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    COMMANDS[args.command](args)
  except (prepare.DataError, weights.WeightsError, ValueError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
