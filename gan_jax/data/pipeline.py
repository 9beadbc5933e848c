"""Batches of prepared uint8 faces in a seeded order, delivered three ways.

The examples of training step s (0-based) are a function of (seed, s) only:
`epoch_order(seed, epoch, n)` permutes the data set once per epoch (an epoch
is `steps_per_epoch(n, batch)` steps), step s reads the slice of it at its
position in the epoch (the remainder is dropped), and, with `hflip`,
`flip_mask(seed, s, batch)` says which to mirror (their keys: gan_jax/streams.py).
So the position of any of these pipelines is just the step, and a resumed run
reads exactly the batches an uninterrupted one would have read.

- `numpy`: the host gathers each batch from the (memory-mapped) array.
- `tfdata`: tf.data runs the same reads and flips in background threads, fed
  the same precomputed indices (not tf's shuffle). TensorFlow is imported only here.
- `device`: the array is copied onto every device once; `device_resident_step`
  gathers each step's batch inside the jitted step, from the same permutation
  computed with jax.random, so no images cross to the devices per step.

Every path hands the step uint8 images; they become floats in [-1, 1] on the
device (`images.to_float` in the step).
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib.util
import itertools
import sys
import time
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from gan_jax import cli, parallel, streams
from gan_jax.errors import ConfigError, DataError, UserError
from gan_jax.parallel import BATCH_AXIS
from gan_jax.data import loader as data_loader

PIPELINES = ("auto", "device", "tfdata", "numpy")


# --- the order of examples ----------------------------------------------------------------------

def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Training steps in one epoch: full global batches only (the remainder is dropped)."""
  return num_examples // batch_size


def _permutation(seed: int, epoch, num_examples: int) -> jax.Array:
  """The epoch's permutation; traceable, so the device path computes it inside jit."""
  return jax.random.permutation(streams.epoch_key(seed, epoch), num_examples)


def _flips(seed: int, step, batch_size: int) -> jax.Array:
  """Which examples of the global batch of `step` to mirror; traceable."""
  return jax.random.bernoulli(streams.flip_key(seed, step), 0.5, (batch_size,))


def _on_host_cpu():
  return jax.default_device(jax.local_devices(backend="cpu")[0])


def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The permutation of example indices used in `epoch` (same on every host/backend)."""
  with _on_host_cpu():
    return np.asarray(_permutation(seed, epoch, num_examples))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _jitted_flips(seed, step, batch_size):
  return _flips(seed, step, batch_size)


def flip_mask(seed: int, step: int, batch_size: int) -> np.ndarray:
  """bool (batch_size,): which examples of global batch `step` are mirrored."""
  with _on_host_cpu():
    return np.asarray(_jitted_flips(seed, np.int32(step), batch_size))


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _jitted_flips_of_steps(seed, first_step, num_steps, batch_size):
  steps = first_step + jnp.arange(num_steps, dtype=jnp.int32)
  return jax.vmap(lambda step: _flips(seed, step, batch_size))(steps)


def flip_masks(seed: int, first_step: int, num_steps: int, batch_size: int) -> np.ndarray:
  """`flip_mask` of num_steps steps at once, (num_steps, batch_size): one call per epoch."""
  with _on_host_cpu():
    return np.asarray(_jitted_flips_of_steps(seed, np.int32(first_step), num_steps, batch_size))


def check_batch_size(batch_size: int, num_examples: int, process_count: int = 1) -> None:
  """Fail early when the global batch cannot be read from this data set."""
  if batch_size > num_examples:
    raise DataError(f"train.batch_size={batch_size} is larger than the data set "
                            f"({num_examples} images); lower the batch size or add images")
  if batch_size % process_count:
    raise ConfigError(f"train.batch_size={batch_size} is not divisible by the {process_count} "
                      "processes; use a multiple of the process count")


def batch_indices(seed: int, step: int, batch_size: int, num_examples: int) -> np.ndarray:
  """Indices of the global batch read by 0-based training step `step` (drop remainder)."""
  check_batch_size(batch_size, num_examples)
  epoch, position = divmod(step, steps_per_epoch(num_examples, batch_size))
  order = epoch_order(seed, epoch, num_examples)
  return order[position * batch_size:(position + 1) * batch_size]


def process_plans(seed: int, batch_size: int, num_examples: int, start_step: int = 0,
                  process_index: int = 0, process_count: int = 1, hflip: bool = False
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(indices, flips) of this process's share of each global batch, from `start_step` on."""
  check_batch_size(batch_size, num_examples, process_count)
  per_process = batch_size // process_count
  mine = slice(process_index * per_process, (process_index + 1) * per_process)
  epoch_steps = steps_per_epoch(num_examples, batch_size)
  flips = np.zeros((epoch_steps, batch_size), bool)
  order, order_epoch = None, -1
  for step in itertools.count(start_step):
    epoch, position = divmod(step, epoch_steps)
    if epoch != order_epoch:
      order, order_epoch = epoch_order(seed, epoch, num_examples), epoch
      if hflip:  # Drawn per epoch: a host call per step would cost ~1 ms.
        flips = flip_masks(seed, epoch * epoch_steps, epoch_steps, batch_size)
    indices = order[position * batch_size:(position + 1) * batch_size][mine]
    yield indices, flips[position, mine]


def pipeline_state(step: int, seed: int) -> dict[str, int]:
  """What a checkpoint needs to resume the input pipeline: every path is a function of the step."""
  return {"step": int(step), "seed": int(seed)}


def start_step_from(saved: dict[str, int], seed: int) -> int:
  """The step to restart the pipeline at, from a saved `pipeline_state`."""
  if int(saved["seed"]) != int(seed):
    raise ConfigError(f"the checkpoint's input pipeline used seed {saved['seed']}, this run seed "
                      f"{seed}; resume with --config.seed={saved['seed']}")
  return int(saved["step"])


# --- host paths: numpy and tf.data --------------------------------------------------------------

def read_batch(images: np.ndarray, indices: np.ndarray, flips: np.ndarray | None = None
               ) -> np.ndarray:
  """images[indices], with the examples where `flips` is true mirrored left-right.

  Rows are read in ascending order (fast on memory-mapped files). Both host
  paths use this, so they flip exactly alike.
  """
  ascending = np.argsort(indices, kind="stable")
  batch = np.empty((len(indices), *images.shape[1:]), images.dtype)
  batch[ascending] = images[indices[ascending]]
  if flips is not None and flips.any():
    # Move whole pixels (one 3-byte item each): about twice as fast as uint8 items.
    pixels = batch.view(np.dtype((np.void, batch.shape[-1] * batch.itemsize)))[..., 0]
    pixels[flips] = pixels[flips, :, ::-1]
  return batch


def numpy_batches(images: np.ndarray, batch_size: int, seed: int, start_step: int = 0,
                  process_index: int = 0, process_count: int = 1,
                  hflip: bool = False) -> Iterator[np.ndarray]:
  """Yield this process's share of each global batch, from `start_step` on."""
  for indices, flips in process_plans(seed, batch_size, len(images), start_step,
                                      process_index, process_count, hflip):
    yield read_batch(images, indices, flips)


def tensorflow_available() -> bool:
  """Whether `import tensorflow` can work (checked without importing it)."""
  try:
    return importlib.util.find_spec("tensorflow") is not None
  except (ImportError, ValueError):
    return False


def import_tensorflow():
  try:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise DataError("data.pipeline='tfdata' needs tensorflow (pip install tensorflow-cpu); "
                            "use data.pipeline='device' or 'numpy' without it") from error
  try:
    # JAX owns the accelerators; tf.data only runs on the host CPU.
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:
    pass  # TF already initialised its devices elsewhere in this process.
  return tf


def tfdata_batches(images: np.ndarray, batch_size: int, seed: int, start_step: int = 0,
                   process_index: int = 0, process_count: int = 1,
                   hflip: bool = False) -> Iterator[np.ndarray]:
  """`numpy_batches`, read and flipped by tf.data in background threads."""
  tf = import_tensorflow()
  per_process = batch_size // process_count
  plans = functools.partial(process_plans, seed, batch_size, len(images), start_step,
                            process_index, process_count, hflip)

  def load(indices, flips):
    batch = tf.numpy_function(functools.partial(read_batch, images), [indices, flips], tf.uint8,
                              stateful=False)
    return tf.ensure_shape(batch, (per_process, *images.shape[1:]))

  dataset = tf.data.Dataset.from_generator(plans, output_signature=(
      tf.TensorSpec((per_process,), tf.int64), tf.TensorSpec((per_process,), tf.bool)))
  dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return dataset.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()


def prefetch_to_device(batches: Iterator[np.ndarray], put: Callable[[np.ndarray], Any],
                       size: int = 2) -> Iterator[Any]:
  """Put batches on the devices `size` steps ahead (device_put is asynchronous)."""
  queue = collections.deque()
  for batch in batches:
    queue.append(put(batch))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def host_batches(pipeline: str, images: np.ndarray, put: Callable[[np.ndarray], Any],
                 batch_size: int, seed: int, start_step: int = 0, hflip: bool = False,
                 prefetch: int = 2) -> Iterator[Any]:
  """On-device batches of this process from the 'numpy' or 'tfdata' path."""
  make = {"numpy": numpy_batches, "tfdata": tfdata_batches}[pipeline]
  batches = make(images, batch_size, seed, start_step, jax.process_index(), jax.process_count(),
                 hflip=hflip)
  return prefetch_to_device(batches, put, prefetch)


# --- device path --------------------------------------------------------------------------------

def device_resident_step(step_fn: Callable, num_examples: int, seed: int, batch_size: int,
                         hflip: bool = False) -> Callable:
  """Turn step_fn(state, batch, key) into f(state, images, key) that reads its own batch.

  `images` is the whole uint8 data set, replicated on every device (see
  `parallel.DataParallel(..., replicated_data=True)`). Each device takes its
  slice of the global batch of step `state.step` from the epoch permutation,
  computed in the step with jax.random: the same batches as `numpy_batches`.
  """
  check_batch_size(batch_size, num_examples)
  epoch_steps = steps_per_epoch(num_examples, batch_size)

  def step(state, images, key):
    epoch, position = jnp.divmod(state.step, epoch_steps)
    per_device = batch_size // lax.axis_size(BATCH_AXIS)
    offset = lax.axis_index(BATCH_AXIS) * per_device
    order = _permutation(seed, epoch, num_examples)
    indices = lax.dynamic_slice_in_dim(order, position * batch_size + offset, per_device)
    batch = jnp.take(images, indices, axis=0)
    if hflip:
      flips = lax.dynamic_slice_in_dim(_flips(seed, state.step, batch_size), offset, per_device)
      batch = jnp.where(flips[:, None, None, None], batch[:, :, ::-1], batch)
    return step_fn(state, batch, key)

  return step


def choose_pipeline(requested: str, images: np.ndarray, device_budget_mb: float) -> str:
  """The path to use: 'auto' means device if the array fits the budget, else tf.data or numpy."""
  if requested not in PIPELINES:
    raise ConfigError(f"unknown data.pipeline {requested!r}; use one of {', '.join(PIPELINES)}")
  if requested == "auto":
    if images.nbytes <= device_budget_mb * 2**20:
      return "device"
    return "tfdata" if tensorflow_available() else "numpy"
  if requested == "tfdata" and not tensorflow_available():
    import_tensorflow()  # Raises the DataError that says what to do.
  return requested


# --- benchmark ----------------------------------------------------------------------------------

class _Counter(NamedTuple):
  step: jax.Array


def _deliver(state, batch, key):
  """A stand-in train step that returns its batch: the bench times getting it on the devices."""
  del key
  return _Counter(state.step + 1), batch


def bench(images: np.ndarray, batch_size: int = 128, steps: int = 50,
          pipelines=("tfdata", "numpy", "device"), hflip: bool = False, warmup: int = 5
          ) -> dict[str, float]:
  """Images per second each path delivers onto the devices, as a batch sharded over them.

  Host paths: read, (flip,) copy to the devices. Device path: the jitted
  permutation, gather (and flip) from the device-resident array.
  """
  runner = parallel.DataParallel(_deliver)
  parallel.check_batch_size(batch_size, runner.num_devices)
  results = {}
  for pipeline in pipelines:
    if pipeline == "device":
      step = device_resident_step(_deliver, len(images), 0, batch_size, hflip)
      gather = jax.jit(jax.shard_map(step, mesh=runner.mesh, in_specs=(P(), P(), P()),
                                     out_specs=(P(), P(BATCH_AXIS)), check_vma=False))
      on_device = runner.put_replicated(images)
      state, key = _Counter(jnp.zeros((), jnp.int32)), jax.random.key(0)

      def device_batches(state=state):
        while True:
          state, batch = gather(state, on_device, key)
          yield batch
      batches = device_batches()
    else:
      batches = host_batches(pipeline, images, runner.put_batch, batch_size, seed=0, hflip=hflip)
    for batch in itertools.islice(batches, warmup):
      batch.block_until_ready()
    start = time.perf_counter()
    for batch in itertools.islice(batches, steps):
      batch.block_until_ready()
    results[pipeline] = steps * batch_size / (time.perf_counter() - start)
  return results


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.input_pipeline",
                                   description="Measure how fast each input path feeds the devices.")
  parser.add_argument("--bench", action="store_true", required=True)
  parser.add_argument("--path", required=True, help="prepared directory, .npy, or image folder")
  parser.add_argument("--resolution", type=int, default=None,
                      help="needed for an image folder (prepared into the cache)")
  parser.add_argument("--batch", type=cli.positive_int, default=128, help="global batch size")
  parser.add_argument("--steps", type=cli.positive_int, default=50, help="timed batches per path")
  parser.add_argument("--pipelines", default="tfdata,numpy,device")
  parser.add_argument("--hflip", action="store_true")
  return parser


def run(args: argparse.Namespace) -> None:
  images = data_loader.training_images(args.path, args.resolution, progress=True)
  check_batch_size(args.batch, len(images))
  pipelines = args.pipelines.split(",")
  for pipeline in pipelines:
    if pipeline not in PIPELINES[1:]:
      raise UserError(f"unknown pipeline {pipeline!r}; use {', '.join(PIPELINES[1:])}")
  print(f"{args.path}: {len(images)} images {images.shape[1]}x{images.shape[2]} "
        f"({images.nbytes / 2**20:.1f} MiB); global batch {args.batch}, {args.steps} batches, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s)", flush=True)
  for pipeline, rate in bench(images, args.batch, args.steps, pipelines, args.hflip).items():
    print(f"{pipeline:>7}: {rate:10.0f} images/s  ({1e3 * args.batch / rate:.2f} ms/batch)")


def main(argv: list[str] | None = None) -> int:
  return cli.run_cli(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
