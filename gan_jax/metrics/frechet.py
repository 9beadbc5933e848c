"""Fréchet distance between two Gaussians fitted to feature sets.

Shared by the pixel-space learning checks and FID: only the features differ.
"""

import numpy as np

from gan_jax import images as image_lib


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and (unbiased) covariance of (N, D) features, in float64."""
  features = np.asarray(features, np.float64).reshape(len(features), -1)
  if len(features) < 2:
    raise ValueError(f"need at least 2 feature vectors, got {len(features)}")
  return features.mean(axis=0), np.cov(features, rowvar=False)


def trace_sqrt_product(sigma1, sigma2) -> float:
  """Tr((S1 S2)^(1/2)) for symmetric positive semi-definite S1, S2.

  With S1 = L L^T, S1 S2 is similar to the symmetric L^T S2 L, so it has the
  same non-negative eigenvalues. A Cholesky factor and one symmetric
  eigenvalue solve are several times faster than scipy.linalg.sqrtm of the
  non-symmetric product (seconds instead of tens of seconds at 2048x2048)
  and give no complex round-off. A singular S1 (fewer samples than
  dimensions) uses its eigendecomposition square root instead of L.
  """
  try:
    factor = np.linalg.cholesky(sigma1)
  except np.linalg.LinAlgError:
    eigenvalues, eigenvectors = np.linalg.eigh(sigma1)
    factor = eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))  # factor factor^T = S1.
  product = factor.T @ sigma2 @ factor
  product_eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
  # Round-off can make zero eigenvalues slightly negative.
  return float(np.sqrt(np.clip(product_eigenvalues, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), computed in float64."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f"statistics differ in shape: {mu1.shape} vs {mu2.shape}")
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2)
               - 2.0 * trace_sqrt_product(sigma1, sigma2))


def frechet_distance_of(features1: np.ndarray, features2: np.ndarray) -> float:
  """Fréchet distance between two (N, D) feature sets."""
  features1 = np.asarray(features1, np.float64).reshape(len(features1), -1)
  features2 = np.asarray(features2, np.float64).reshape(len(features2), -1)
  sizes = (len(features1), len(features2))
  if 2 <= min(sizes) and max(sizes) < features1.shape[1] == features2.shape[1]:
    # Fewer samples than dimensions: with S = A^T A for the centred features A / sqrt(N - 1),
    # Tr((S1 S2)^(1/2)) is the sum of singular values of the small A1 A2^T (N1 x N2).
    centred1, centred2 = (f - f.mean(axis=0) for f in (features1, features2))
    centred1 /= np.sqrt(len(features1) - 1)
    centred2 /= np.sqrt(len(features2) - 1)
    diff = features1.mean(axis=0) - features2.mean(axis=0)
    nuclear_norm = np.linalg.svd(centred1 @ centred2.T, compute_uv=False).sum()
    return float(diff @ diff + (centred1**2).sum() + (centred2**2).sum() - 2.0 * nuclear_norm)
  return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))


def pixel_projection_features(images: np.ndarray, dim: int = 64, seed: int = 0) -> np.ndarray:
  """A fixed random projection of flattened images in [-1, 1] (uint8 is rescaled).

  Used for cheap "did it learn" checks: the Fréchet distance on these features
  falls as generated images approach the data distribution.
  """
  images = image_lib.to_float(np.asarray(images), np.float64)
  flat = images.reshape(len(images), -1).astype(np.float64)
  projection = np.random.RandomState(seed).normal(size=(flat.shape[1], dim)) / np.sqrt(flat.shape[1])
  return flat @ projection
