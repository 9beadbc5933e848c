"""Batches of pre-resized uint8 faces in a seeded order.

The order of examples is a function of (seed, epoch) only, and the batch for
training step s is a function of s, so a resumed run reads exactly the batches
an uninterrupted one would have read.
"""

from __future__ import annotations

from typing import Iterator

import jax
import numpy as np


def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The permutation of example indices used in `epoch` (same on every host/backend)."""
  key = jax.random.fold_in(jax.random.key(seed), epoch)
  with jax.default_device(jax.local_devices(backend="cpu")[0]):
    return np.asarray(jax.random.permutation(key, num_examples))


def batch_indices(seed: int, step: int, batch_size: int, num_examples: int) -> np.ndarray:
  """Indices of the global batch read by 0-based training step `step` (drop remainder)."""
  steps_per_epoch = num_examples // batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"train.batch_size={batch_size} is larger than the data set "
                     f"({num_examples} images); lower the batch size or add images")
  epoch, position = divmod(step, steps_per_epoch)
  order = epoch_order(seed, epoch, num_examples)
  return order[position * batch_size:(position + 1) * batch_size]


def numpy_batches(images: np.ndarray, batch_size: int, seed: int, start_step: int = 0,
                  process_index: int = 0, process_count: int = 1) -> Iterator[np.ndarray]:
  """Yield this process's share of each global batch, from `start_step` on."""
  if batch_size % process_count:
    raise ValueError(f"train.batch_size={batch_size} is not divisible by {process_count} processes")
  per_process = batch_size // process_count
  steps_per_epoch = len(images) // batch_size
  batch_indices(seed, start_step, batch_size, len(images))  # fail early on a too-large batch
  step, order, order_epoch = start_step, None, -1
  while True:
    epoch, position = divmod(step, steps_per_epoch)
    if epoch != order_epoch:
      order, order_epoch = epoch_order(seed, epoch, len(images)), epoch
    indices = order[position * batch_size:(position + 1) * batch_size]
    indices = indices[process_index * per_process:(process_index + 1) * per_process]
    # Read in ascending index order (fast on memory-mapped files), then restore
    # the permuted order.
    rank = np.argsort(np.argsort(indices))
    yield np.asarray(images[np.sort(indices)])[rank]
    step += 1
