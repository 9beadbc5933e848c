"""FID, KID and precision/recall on Inception pool3 features.

  features = inception.extract_features(uint8_images)
  fid = frechet.frechet_distance_of(real_features, fake_features)
  kid_mean, kid_std = kid(real_features, fake_features)
  precision, recall = precision_recall(real_features, fake_features)

Features of a data set (a folder of images or a uint8 .npy) are cached with
their mean and covariance by `dataset_statistics`, so the reference side of
repeated evaluations costs nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import tempfile

import numpy as np

from gan_jax.metrics import frechet
from gan_jax.metrics import inception
from gan_jax.metrics import weights
from gan_jax.data import decode
from gan_jax.data import loader as data_loader
from gan_jax.errors import DataError

# Changes whenever cached statistics would no longer match (network, preprocessing).
STATS_VERSION = "inception-2015-12-05-pool3-v1"


def kid(features_a: np.ndarray, features_b: np.ndarray, num_subsets: int = 100,
        max_subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
  """Kernel Inception Distance (Bińkowski et al. 2018): mean and std over subsets.

  Each subset draws m = min(N_a, N_b, max_subset_size) vectors from each set
  (without replacement) and computes the unbiased MMD^2 with the cubic
  polynomial kernel k(x, y) = (x.y / d + 1)^3.
  """
  features_a = np.asarray(features_a, np.float64)
  features_b = np.asarray(features_b, np.float64)
  size = min(len(features_a), len(features_b), max_subset_size)
  if size < 2:
    raise ValueError("KID needs at least 2 feature vectors in each set")
  dim = features_a.shape[1]
  rng = np.random.default_rng(seed)
  estimates = np.empty(num_subsets)
  for index in range(num_subsets):
    x = features_a[rng.choice(len(features_a), size, replace=False)]
    y = features_b[rng.choice(len(features_b), size, replace=False)]
    k_xx = (x @ x.T / dim + 1) ** 3
    k_yy = (y @ y.T / dim + 1) ** 3
    k_xy = (x @ y.T / dim + 1) ** 3
    # Unbiased: the within-set sums leave out the diagonal (k(x_i, x_i)).
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (size * (size - 1))
    estimates[index] = within - 2 * k_xy.mean()
  return float(estimates.mean()), float(estimates.std())


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Euclidean distances between the rows of a and b."""
  squared = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
  return np.sqrt(np.maximum(squared, 0))


def knn_radii(features: np.ndarray, k: int = 3, batch_size: int = 1000) -> np.ndarray:
  """Distance from each vector to its k-th nearest other vector in the same set."""
  radii = np.empty(len(features))
  for start in range(0, len(features), batch_size):
    distances = _pairwise_distances(features[start:start + batch_size], features)
    # Index k, not k - 1: the vector itself is at distance 0.
    radii[start:start + batch_size] = np.partition(distances, k, axis=1)[:, k]
  return radii


def manifold_coverage(queries: np.ndarray, support: np.ndarray, radii: np.ndarray,
                      batch_size: int = 1000) -> float:
  """Fraction of queries inside at least one ball (support[j], radii[j])."""
  inside = np.empty(len(queries), bool)
  for start in range(0, len(queries), batch_size):
    distances = _pairwise_distances(queries[start:start + batch_size], support)
    inside[start:start + batch_size] = (distances <= radii[None, :]).any(axis=1)
  return float(inside.mean())


def precision_recall(real_features: np.ndarray, fake_features: np.ndarray, k: int = 3,
                     batch_size: int = 1000) -> tuple[float, float]:
  """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

  Precision: the fraction of generated vectors inside the real manifold (the
  union of balls reaching each real vector's k-th neighbour); recall: the
  fraction of real vectors inside the generated manifold.
  """
  real = np.asarray(real_features, np.float64)
  fake = np.asarray(fake_features, np.float64)
  if min(len(real), len(fake)) <= k:
    raise ValueError(f"precision/recall with k={k} needs more than {k} vectors per set")
  precision = manifold_coverage(fake, real, knn_radii(real, k, batch_size), batch_size)
  recall = manifold_coverage(real, fake, knn_radii(fake, k, batch_size), batch_size)
  return precision, recall


@dataclasses.dataclass(frozen=True)
class Statistics:
  """Inception features of a data set and their Gaussian fit."""
  features: np.ndarray  # (N, 2048) float32
  mu: np.ndarray  # (2048,) float64
  sigma: np.ndarray  # (2048, 2048) float64


def statistics_of(features: np.ndarray) -> Statistics:
  return Statistics(features, *frechet.gaussian_stats(features))


def fid_from_statistics(a: Statistics, b: Statistics) -> float:
  """FID from precomputed statistics (from the features when N < 2048, which is faster)."""
  if max(len(a.features), len(b.features)) < a.features.shape[1]:
    return frechet.frechet_distance_of(a.features, b.features)
  return frechet.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def _count_images(path: pathlib.Path, limit: int | None, start: int = 0) -> int:
  if not path.exists():
    raise DataError(f"{path} does not exist; give a folder of images or a uint8 .npy file")
  if path.is_file():
    if path.suffix != ".npy":
      raise DataError(f"{path} is a file but not a .npy array; give a folder of images "
                              "or a .npy file")
    count = len(np.load(path, mmap_mode="r"))
  else:
    count = len(decode.list_image_files(path))
  count = max(count - start, 0)
  return count if limit is None else min(count, limit)


def statistics_cache_path(path: os.PathLike | str, resolution: int | None,
                          limit: int | None = None, start: int = 0) -> pathlib.Path:
  """Cache file for a data set: a hash of its path, resolution, first image and image count.

  The path's size and modification time are hashed too, so a regenerated
  .npy (or a folder whose file list changed) is not served stale statistics.
  """
  path = pathlib.Path(path).resolve()
  count = _count_images(path, limit, start)
  stat = path.stat()
  key = [STATS_VERSION, str(path), resolution, count,
         stat.st_size if path.is_file() else None, stat.st_mtime_ns]
  # From the first image the key is as it always was, so earlier caches stay valid.
  key = json.dumps(key + [start] if start else key)
  digest = hashlib.sha256(key.encode()).hexdigest()[:20]
  return weights.cache_dir() / "fid_stats" / f"{path.name}-{digest}.npz"


def dataset_statistics(path: os.PathLike | str, resolution: int | None = None,
                       limit: int | None = None, batch_size: int = 50,
                       use_cache: bool = True, start: int = 0) -> Statistics:
  """Features, mean and covariance of a folder of images or a uint8 .npy.

  Images are read with `data_loader.load_image_array(path, resolution, crop='none')`
  (resolution None: all images must share one size); `start` and `limit`
  take images[start:start + limit] (e.g. the held-out end of a data set).
  Results are cached under `${GAN_JAX_CACHE:-~/.cache/gan_jax}/fid_stats/`
  (8 KiB per image).
  """
  cache_file = statistics_cache_path(path, resolution, limit, start) if use_cache else None
  if cache_file is not None and cache_file.is_file():
    with np.load(cache_file) as cached:
      return Statistics(cached["features"], cached["mu"], cached["sigma"])
  if start:
    images = data_loader.load_image_array(path, resolution, crop="none")[start:]
    images = images[:limit] if limit is not None else images
  else:
    images = data_loader.load_image_array(path, resolution, crop="none", limit=limit)
  stats = statistics_of(inception.extract_features(images, batch_size))
  if cache_file is not None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    # Temporary name then rename: concurrent evaluations never read half a file.
    fd, partial = tempfile.mkstemp(prefix=cache_file.name, suffix=".partial", dir=cache_file.parent)
    try:
      with os.fdopen(fd, "wb") as file:
        np.savez(file, features=stats.features, mu=stats.mu, sigma=stats.sigma)
      os.replace(partial, cache_file)
    except BaseException:
      pathlib.Path(partial).unlink(missing_ok=True)
      raise
  return stats
