"""Two-sample tests on embeddings: 1-nearest-neighbour accuracy and 2-D maps.

The 1-NN leave-one-out classifier labels each of N real and N generated
embeddings with the label of its nearest other embedding. Its accuracy is
0.5 when the two sets are indistinguishable and 1.0 when they are separable
(below 0.5 suggests the generator copies training images). t-SNE and PCA
scatter plots show the same comparison visually.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

# Colours and order used in every plot: real first, generated second.
COLORS = ("tab:blue", "tab:orange")


def _as_matrix(embeddings: np.ndarray) -> np.ndarray:
  embeddings = np.asarray(embeddings, np.float32)
  return embeddings.reshape(len(embeddings), -1)


def one_nn_accuracy(real: np.ndarray, generated: np.ndarray) -> float:
  """Leave-one-out 1-NN two-sample accuracy of (N, ...) real vs (N, ...) generated."""
  real, generated = _as_matrix(real), _as_matrix(generated)
  if len(real) != len(generated) or len(real) < 2:
    raise ValueError(f"need the same number (>= 2) of real and generated embeddings, got "
                     f"{len(real)} and {len(generated)}")
  points = np.concatenate([real, generated])
  labels = np.repeat([0, 1], len(real))
  # kneighbors() without queries leaves each point out of its own neighbours.
  _, nearest = NearestNeighbors(n_neighbors=1).fit(points).kneighbors()
  return float((labels[nearest[:, 0]] == labels).mean())


def pixel_embeddings(images: np.ndarray) -> np.ndarray:
  """uint8 (N, H, W, C) images as flat float32 vectors in [0, 1]."""
  return _as_matrix(images) / 255.0


def _reduce(points: np.ndarray, dims: int, seed: int) -> np.ndarray:
  """PCA to at most `dims` dimensions (fewer when the data has fewer)."""
  dims = min(dims, points.shape[0], points.shape[1])
  return PCA(n_components=dims, random_state=seed).fit_transform(points)


def pca_2d(points: np.ndarray, seed: int = 0) -> np.ndarray:
  return _reduce(_as_matrix(points), 2, seed)


def tsne_2d(points: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
  """t-SNE to 2-D after PCA to 50 dimensions (the usual de-noising step)."""
  points = _reduce(_as_matrix(points), 50, seed)
  perplexity = min(perplexity, (len(points) - 1) / 3)  # t-SNE needs perplexity < N.
  return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
              random_state=seed).fit_transform(points)


def scatter_plot(coordinates: np.ndarray, num_real: int, path: os.PathLike | str, title: str,
                 names: tuple[str, str] = ("real", "generated")) -> pathlib.Path:
  """Scatter of 2-D points, the first `num_real` real and the rest generated, as PNG."""
  figure = Figure(figsize=(6, 6), dpi=120)  # Figure alone renders with Agg, no pyplot state.
  axes = figure.add_subplot()
  for name, color, part in zip(names, COLORS, (coordinates[:num_real], coordinates[num_real:])):
    axes.scatter(part[:, 0], part[:, 1], s=8, alpha=0.6, color=color, label=f"{name} ({len(part)})")
  axes.set_title(title)
  axes.set_xticks([])
  axes.set_yticks([])
  axes.legend(loc="best", markerscale=2)
  figure.tight_layout()
  path = pathlib.Path(path)
  figure.savefig(path, format="png")
  return path


def write_embedding_plots(real: np.ndarray, generated: np.ndarray, out_dir: os.PathLike | str,
                          seed: int = 0, label: str = "",
                          names: tuple[str, str] = ("real", "generated"),
                          ) -> dict[str, pathlib.Path]:
  """Writes `tsne.png` and `pca.png` of real vs generated embeddings into out_dir."""
  real, generated = _as_matrix(real), _as_matrix(generated)
  points = np.concatenate([real, generated])
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  suffix = f" of {label}" if label else ""
  return {
      "tsne": scatter_plot(tsne_2d(points, seed), len(real), out_dir / "tsne.png",
                           f"t-SNE{suffix}", names),
      "pca": scatter_plot(pca_2d(points, seed), len(real), out_dir / "pca.png",
                          f"PCA{suffix}", names),
  }
