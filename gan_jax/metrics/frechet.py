"""Fréchet distance between two Gaussians fitted to feature sets.

Shared by the pixel-space learning checks and FID: only the features differ.
"""

import numpy as np
import scipy.linalg


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and (unbiased) covariance of (N, D) features, in float64."""
  features = np.asarray(features, np.float64).reshape(len(features), -1)
  if len(features) < 2:
    raise ValueError(f"need at least 2 feature vectors, got {len(features)}")
  return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), computed in float64.

  The product S1 S2 is not symmetric, so its square root can pick up tiny
  imaginary parts from round-off; those are dropped, and a singular product
  is regularised with a small ridge as the reference FID code does.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f"statistics differ in shape: {mu1.shape} vs {mu2.shape}")
  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    ridge = np.eye(sigma1.shape[0]) * 1e-6
    covmean = scipy.linalg.sqrtm((sigma1 + ridge) @ (sigma2 + ridge))
  covmean = np.real(covmean)
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance_of(features1: np.ndarray, features2: np.ndarray) -> float:
  """Fréchet distance between two (N, D) feature sets."""
  return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))


def pixel_projection_features(images: np.ndarray, dim: int = 64, seed: int = 0) -> np.ndarray:
  """A fixed random projection of flattened images in [-1, 1] (uint8 is rescaled).

  Used for cheap "did it learn" checks: the Fréchet distance on these features
  falls as generated images approach the data distribution.
  """
  images = np.asarray(images)
  if images.dtype == np.uint8:
    images = images.astype(np.float64) / 127.5 - 1.0
  flat = images.reshape(len(images), -1).astype(np.float64)
  projection = np.random.RandomState(seed).normal(size=(flat.shape[1], dim)) / np.sqrt(flat.shape[1])
  return flat @ projection
