"""Fréchet distance, KID, precision/recall and the statistics cache (no Inception needed)."""

import numpy as np
import pytest
import scipy.linalg

from gan_jax.data import prepare
from gan_jax.metrics import fid
from gan_jax.metrics import frechet
from gan_jax.data import loader as data_loader


def random_spd(rng, dim):
  factor = rng.normal(size=(dim, dim))
  return factor @ factor.T / dim + 0.1 * np.eye(dim)


def scipy_frechet(mu1, sigma1, mu2, sigma2):
  """The textbook formula with scipy's general matrix square root."""
  covmean = np.real(scipy.linalg.sqrtm(sigma1 @ sigma2))
  return ((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean)


@pytest.mark.parametrize("dim", [1, 5, 64])
def test_frechet_matches_scipy_sqrtm(dim):
  rng = np.random.default_rng(dim)
  mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
  sigma1, sigma2 = random_spd(rng, dim), random_spd(rng, dim)
  np.testing.assert_allclose(frechet.frechet_distance(mu1, sigma1, mu2, sigma2),
                             scipy_frechet(mu1, sigma1, mu2, sigma2), rtol=1e-8, atol=1e-8)


def test_frechet_of_singular_covariances_matches_scipy():
  rng = np.random.default_rng(1)
  features1, features2 = rng.normal(size=(10, 32)), rng.normal(size=(12, 32)) * 2 + 1
  stats1, stats2 = frechet.gaussian_stats(features1), frechet.gaussian_stats(features2)
  expected = scipy_frechet(*stats1, *stats2)
  # Both the covariance route and the few-samples (N < D) route of frechet_distance_of.
  np.testing.assert_allclose(frechet.frechet_distance(*stats1, *stats2), expected, rtol=1e-6)
  np.testing.assert_allclose(frechet.frechet_distance_of(features1, features2), expected, rtol=1e-6)


def test_frechet_of_same_features_is_zero():
  features = np.random.default_rng(0).normal(size=(300, 16))
  assert abs(frechet.frechet_distance_of(features, features)) < 1e-8
  assert abs(frechet.frechet_distance_of(features[:10], features[:10])) < 1e-8


def test_fid_of_face_halves_far_below_noise(faces_dir):
  # Pixel projections stand in for Inception features (too slow on CPU for 1,000 images).
  faces = data_loader.load_image_array(faces_dir, resolution=64, limit=1000)
  noise = np.random.RandomState(0).randint(0, 256, size=faces[:500].shape, dtype=np.uint8)
  features = frechet.pixel_projection_features(faces)
  halves = frechet.frechet_distance_of(features[:500], features[500:])
  noise_features = frechet.pixel_projection_features(noise)
  versus_noise = frechet.frechet_distance_of(features[:500], noise_features)
  assert 0 < halves < 0.1 * versus_noise


def test_kid_matches_direct_formula():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)) + 0.5
  kernel = lambda a, b: (a @ b / 4 + 1) ** 3
  within = sum(kernel(x[i], x[j]) + kernel(y[i], y[j])
               for i in range(6) for j in range(6) if i != j)
  across = sum(kernel(x[i], y[j]) for i in range(6) for j in range(6))
  expected = within / 30 - 2 * across / 36
  # One subset of all 6 vectors: a permutation, which the estimate does not depend on.
  mean, std = fid.kid(x, y, num_subsets=1)
  np.testing.assert_allclose(mean, expected, rtol=1e-10)
  assert std == 0


def test_kid_near_zero_for_one_distribution_positive_for_two():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(400, 32)), rng.normal(size=(400, 32))
  same_mean, same_std = fid.kid(a, b, num_subsets=20, max_subset_size=200)
  shifted_mean, _ = fid.kid(a, b + 0.5, num_subsets=20, max_subset_size=200)
  assert abs(same_mean) < 3 * same_std + 1e-3
  assert shifted_mean > 20 * max(abs(same_mean), same_std)


def test_precision_recall():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(300, 8))
  assert fid.precision_recall(real, real) == (1.0, 1.0)
  precision, recall = fid.precision_recall(real, real + 100.0)
  assert precision == 0.0 and recall == 0.0
  # Generated samples covering only half of a two-mode real set: precise, half recall.
  modes = np.concatenate([rng.normal(size=(150, 2)), rng.normal(size=(150, 2)) + 20])
  precision, recall = fid.precision_recall(modes, rng.normal(size=(300, 2)), batch_size=64)
  assert precision > 0.9 and 0.4 < recall < 0.6


def test_knn_radii_excludes_self():
  points = np.array([[0.0], [1.0], [3.0], [6.0]])
  np.testing.assert_allclose(fid.knn_radii(points, k=1, batch_size=3), [1, 1, 2, 3])
  np.testing.assert_allclose(fid.knn_radii(points, k=2), [3, 2, 3, 5])


def test_statistics_cache_key(tmp_path, monkeypatch):
  monkeypatch.setenv("GAN_JAX_CACHE", str(tmp_path / "cache"))
  data = tmp_path / "faces.npy"
  np.save(data, np.zeros((10, 8, 8, 3), np.uint8))
  path = fid.statistics_cache_path(data, None)
  assert path.parent == tmp_path / "cache" / "fid_stats" and path.suffix == ".npz"
  assert fid.statistics_cache_path(data, None) == path
  assert fid.statistics_cache_path(data, 64) != path
  assert fid.statistics_cache_path(data, None, limit=5) != path
  assert fid.statistics_cache_path(data, None, limit=50) == path  # Still all 10 images.
  np.save(data, np.zeros((12, 8, 8, 3), np.uint8))
  assert fid.statistics_cache_path(data, None) != path
  with pytest.raises(prepare.DataError, match="does not exist"):
    fid.statistics_cache_path(tmp_path / "missing", None)


def test_fid_from_statistics_uses_either_route():
  rng = np.random.default_rng(0)
  for count in (5, 50):  # Fewer and more samples than dimensions.
    a, b = rng.normal(size=(count, 8)), rng.normal(size=(count, 8)) + 1
    expected = scipy_frechet(*frechet.gaussian_stats(a), *frechet.gaussian_stats(b))
    actual = fid.fid_from_statistics(fid.statistics_of(a), fid.statistics_of(b))
    np.testing.assert_allclose(actual, expected, rtol=1e-8)
