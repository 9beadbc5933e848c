"""The evaluator of generated faces (FID, KID, ...), used by training and by `evaluate run`.

`Evaluator` holds what every measurement against one run's real faces shares:
their features (computed once; Inception features are cached per data set by
`metrics/fid.py`), the latents (image i from latent (seed, i), as
`python -m gan_jax.generate --seed S`; seed 0 unless asked) and the feature
extractor. `Evaluator.evaluate(generate)` measures any generator given as
`generate(z, batch_size)`, e.g. a checkpoint's `explore.loader.TrainedGAN.generate`.

With `--config.eval.every=N` the training loop's `PeriodicEval`, every N
steps and at its last step, evaluates `eval.num_samples` images of the
current generator and logs `eval/fid`, `eval/kid` and `eval/kid_std`
(TensorBoard and metrics.jsonl). With `eval.keep_best` the state with the
lowest FID so far is also saved to WORKDIR/best/checkpoints/STEP (only that
one is kept), a checkpoint directory like the run's own:
`python -m gan_jax.evaluate run --workdir WORKDIR --best`, or any tool given
`--workdir WORKDIR/best`, reads it.

When the run sets faces aside (`data.holdout`, or a data.path prepared with
`--holdout`), every evaluation also measures the generator against those
held-out faces (`fid_heldout`, `kid_heldout`, `kid_std_heldout`) and reports
the floor of real faces at the same sizes: FID/KID between the first
min(num_samples, num_real) training faces and the held-out ones
(`fid_floor_heldout`, `kid_floor_heldout`, `kid_std_floor_heldout`).

`eval.features='pixels'` replaces Inception by a fixed random projection of
the pixels: cheap enough for CPU tests, but not comparable to published FIDs.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from typing import Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from gan_jax import cadence, checkpoint, streams
from gan_jax import images as image_lib
from gan_jax.data import pipeline as input_pipeline
from gan_jax.errors import ConfigError
from gan_jax.explore import latents as latent_lib
from gan_jax.explore import loader
from gan_jax.metrics import fid, frechet, inception, weights
from gan_jax.monitor import progress
from gan_jax.training.state import GANState
from gan_jax.data import loader as data_loader

FEATURES = ("inception", "pixels")
# The run's best checkpoint lives in WORKDIR/BEST_DIR/checkpoints, so it reads like a workdir.
BEST_DIR = "best"
# Images projected at once by `pixel_features` (keeps float64 copies small).
PIXEL_CHUNK = 1024

# z (N, latent_dim), batch size -> images in [-1, 1]; e.g. TrainedGAN.generate.
GenerateFn = Callable[[np.ndarray, int], np.ndarray]


def check_options(num_samples: int, features: str, prefix: str = "--") -> None:
  """Raise ConfigError for too few samples or unknown features (`prefix`: how options are named)."""
  if num_samples < 2:
    raise ConfigError(f"{prefix}num_samples={num_samples}: FID and KID need at least 2 generated "
                     f"images; use 10000 or more for numbers comparable to published ones")
  if features not in FEATURES:
    raise ConfigError(f"{prefix}features={features!r} is unknown; use one of {', '.join(FEATURES)}")


def pixel_features(images: np.ndarray) -> np.ndarray:
  """`frechet.pixel_projection_features` of uint8 images, chunk by chunk (any N)."""
  chunks = [frechet.pixel_projection_features(images[start:start + PIXEL_CHUNK])
            for start in range(0, len(images), PIXEL_CHUNK)]
  return np.concatenate(chunks).astype(np.float32)


def feature_extractor(features: str, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
  """uint8 (N, H, W, 3) images -> (N, D) features: Inception pool3 or pixel projections."""
  if features == "inception":
    return lambda images: inception.extract_features(images, batch_size)
  return pixel_features


def real_statistics(images: np.ndarray, file: str | None, start: int, features: str,
                    batch_size: int = 250, use_cache: bool = True) -> fid.Statistics:
  """Features and Gaussian fit of real `images`, which are images[start:start + N] of `file`.

  Inception features of a slice of a .npy are cached by `fid.dataset_statistics`
  (keyed by the file's path, size, mtime, the first image and the count).
  """
  if features == "inception" and use_cache and file:
    return fid.dataset_statistics(file, None, len(images), batch_size, start=start)
  return fid.statistics_of(feature_extractor(features, batch_size)(images))


def evaluation_split(data: ml_collections.ConfigDict, path: str | None = None,
                     heldout: int | None = None) -> data_loader.Split:
  """The faces a run trained on and the held-out ones to compare with, as training read them.

  `data` is the run's config.data. `heldout` None: the run's own held-out
  faces (data.holdout, or those of a directory prepared with --holdout); 0:
  none; N: the last N images of data.path, refused when the run trained on any
  of them (e.g. 1000 for a run with data.limit=5000 on 6,000 faces). With
  `path`, the faces at `path` are split the same way and data.limit does not
  apply.
  """
  holdout = data.holdout
  args = (data.resolution, data.crop, data.cache_dir or None)
  if path:
    return data_loader.data_split(path, *args, holdout=holdout if heldout is None else heldout)
  run = data_loader.data_split(data.path, *args, limit=data.limit or None, holdout=holdout)
  if heldout is None or (heldout == holdout and heldout):
    return run
  if not heldout:
    return dataclasses.replace(run, heldout=None, heldout_file=None, heldout_start=0)
  other = data_loader.data_split(data.path, *args, holdout=heldout)
  if len(other.training) < len(run.training):
    total = len(other.training) + heldout
    raise ConfigError(f"--heldout={heldout}: the run trained on {len(run.training)} of the "
                      f"{total} images of {data.path}, so at most the last "
                      f"{total - len(run.training)} were never seen; use --heldout <= "
                      f"{total - len(run.training)}")
  return dataclasses.replace(run, heldout=other.heldout, heldout_file=other.heldout_file,
                             heldout_start=other.heldout_start)


def generate_images(generate: GenerateFn, latents: np.ndarray, batch_size: int) -> np.ndarray:
  """uint8 images of `generate` for every row of `latents`.

  Asked for a batch at a time, so only uint8 copies of all of them are kept
  (float32 ones would take four times the memory); `generate` pads the last.
  """
  chunks = []
  with progress.bar(len(latents), "generating") as bar:  # drawn on a terminal only
    for start in range(0, len(latents), batch_size):
      chunks.append(image_lib.to_uint8(generate(latents[start:start + batch_size], batch_size)))
      bar.update(len(chunks[-1]))
  return np.concatenate(chunks)


def feature_metrics(real: fid.Statistics, fake: fid.Statistics, kid_subsets: int = 100,
                    kid_subset_size: int = 1000,
                    with_precision_recall: bool = False) -> dict[str, float]:
  """FID, KID (and optionally precision/recall) of two sets' feature statistics."""
  kid_mean, kid_std = fid.kid(real.features, fake.features, kid_subsets, kid_subset_size)
  metrics = {"fid": fid.fid_from_statistics(real, fake), "kid": kid_mean, "kid_std": kid_std}
  if with_precision_recall:
    metrics["precision"], metrics["recall"] = fid.precision_recall(real.features, fake.features)
  return metrics


def one_nn_equal_sets(real, fake) -> tuple[float, int]:
  """(1-NN leave-one-out accuracy, count) on the first `count` = min(N_real, N_fake) of each:
  the test is only unbiased with equally many samples per set."""
  # Imported here: it brings in sklearn and matplotlib, which training does not need.
  from gan_jax.metrics import embedding  # pylint: disable=import-outside-toplevel
  count = min(len(real), len(fake))
  return embedding.one_nn_accuracy(real[:count], fake[:count]), count


class Evaluator:
  """FID and KID (and, when asked, precision/recall and 1-NN) of a generator against real faces.

    evaluator = Evaluator.for_data(config.data, num_samples, features, batch_size, latent_dim)
    metrics = evaluator.evaluate(model.generate)   # {'fid': ..., 'kid': ..., 'kid_std': ...}

  Every `evaluate` generates from the same latents, so two results differ
  only by the generator.
  """

  def __init__(self, real: fid.Statistics, latents: np.ndarray, features: str, batch_size: int,
               heldout: fid.Statistics | None = None):
    self.real, self.latents, self.batch_size = real, latents, batch_size
    self.heldout = heldout  # features of faces training never saw; None when there are none
    self._extract = feature_extractor(features, batch_size)
    self._floors = {}  # (kid_subsets, kid_subset_size) -> the real-vs-real floor

  @classmethod
  def for_data(cls, data: ml_collections.ConfigDict, num_samples: int, features: str,
               batch_size: int, latent_dim: int, *, num_real: int | None = None,
               path: str | None = None, seed: int = streams.EVAL_SEED,
               use_cache: bool = True, heldout: int | None = None) -> "Evaluator":
    """Against the faces a run trains on (`data`: its config.data), or those at `path`.

    The real side is the first `num_real` of the faces the run trains on
    (data.path, prepared at the run's resolution and crop, without its
    held-out faces, data.limit applied); with `path`, of the faces there
    (data.limit then does not apply). The held-out side: `evaluation_split`.
    """
    split = evaluation_split(data, path, heldout)
    training = split.training[:num_real] if num_real else split.training
    real = real_statistics(training, split.training_file, 0, features, batch_size, use_cache)
    held = None
    if split.heldout is not None:
      held = real_statistics(split.heldout, split.heldout_file, split.heldout_start, features,
                             batch_size, use_cache)
    return cls(real, latent_lib.latents(seed, num_samples, latent_dim), features, batch_size,
               held)

  @property
  def num_real(self) -> int:
    return len(self.real.features)

  @property
  def num_heldout(self) -> int:
    return 0 if self.heldout is None else len(self.heldout.features)

  @property
  def num_floor(self) -> int:
    """Training faces in the floor: as many as generated images, capped by the reference."""
    return min(len(self.latents), self.num_real)

  def floor(self, kid_subsets: int = 100, kid_subset_size: int = 1000) -> dict[str, float]:
    """FID/KID of the first `num_floor` training faces vs the held-out faces (real vs real).

    What a generator that drew new faces from the training distribution would
    score against the held-out faces with as many samples; computed once.
    """
    key = (kid_subsets, kid_subset_size)
    if key not in self._floors:
      count = self.num_floor
      training = (self.real if count == self.num_real else
                  fid.statistics_of(self.real.features[:count]))
      self._floors[key] = feature_metrics(training, self.heldout, kid_subsets, kid_subset_size)
    return self._floors[key]

  def evaluate(self, generate: GenerateFn, kid_subsets: int = 100, kid_subset_size: int = 1000,
               precision_recall: bool = False, one_nn: bool = False) -> dict[str, float]:
    """The metrics of `generate(z, batch_size)` (images in [-1, 1]) on the evaluator's latents."""
    fake = self._extract(generate_images(generate, self.latents, self.batch_size))
    fake_statistics = fid.statistics_of(fake)
    metrics = feature_metrics(self.real, fake_statistics, kid_subsets, kid_subset_size,
                              precision_recall)
    if one_nn:
      metrics["one_nn_accuracy"], _ = one_nn_equal_sets(self.real.features, fake)
    if self.heldout is not None:
      heldout = feature_metrics(self.heldout, fake_statistics, kid_subsets, kid_subset_size)
      metrics.update({f"{name}_heldout": value for name, value in heldout.items()})
      metrics.update({f"{name}_floor_heldout": value
                      for name, value in self.floor(kid_subsets, kid_subset_size).items()})
    return metrics


def sampling_state(gan, state: GANState) -> GANState:
  """A copy of what `gan.sample` reads of `state` (`GAN.sampling_fields`), on this
  process's first device.

  A copy, so the next train step may donate the state's buffers; arrays spread
  over several processes are gathered first.
  """
  fields = jax.tree.map(checkpoint.host_array, gan.sampling_fields(state))
  return loader.partial_state(**jax.device_put(fields, jax.local_devices()[0]))


class PeriodicEval:
  """FID/KID at `eval.every` steps, logged through the monitor; keeps the best checkpoint.

    evaluator = PeriodicEval(config, workdir, gan, monitor)  # real statistics now
    if evaluator.is_eval_step(step):
      evaluator.evaluate(step, runner.get_state(state))

  Every process must call `evaluate` (the best checkpoint is saved by all).
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path, gan,
               monitor):
    options = config.eval  # saved configs from before evaluation existed: filled (defaults.py)
    self.every = options.every
    self.num_steps = config.train.num_steps
    if not self.every:
      return
    check_options(options.num_samples, options.features, prefix="--config.eval.")
    if options.every < 0 or options.batch_size < 1:
      raise ConfigError(f"--config.eval.every={options.every} must be >= 0 and "
                        f"--config.eval.batch_size={options.batch_size} >= 1")
    self.config, self.options, self.monitor = config, options, monitor
    start = time.perf_counter()
    try:
      self.evaluator = Evaluator.for_data(config.data, options.num_samples, options.features,
                                          options.batch_size, gan.latent_dim,
                                          num_real=options.num_real)
    except weights.WeightsError as error:
      raise ConfigError(f"eval.features=inception: {error}; or set --config.eval.features=pixels "
                        "or --config.eval.every=0") from None
    logging.info("eval: %s features of %d real images (%d held out) in %.1f s; FID of %d "
                 "samples every %d steps", options.features, self.evaluator.num_real,
                 self.evaluator.num_heldout, time.perf_counter() - start, options.num_samples,
                 self.every)
    # One model whose weights each evaluation replaces, so its sampling compiles once.
    self.model = loader.TrainedGAN(config, gan, loader.partial_state(), step=0)
    self.best_manager, self.best_fid = None, math.inf
    if options.keep_best:
      self.best_manager = checkpoint.make_manager(pathlib.Path(workdir) / BEST_DIR, max_to_keep=1,
                                                  lowest="fid")
      self.best_fid = self._previous_best()

  def settings(self) -> dict:
    """What makes two FIDs comparable; stored with the best checkpoint."""
    return {"features": self.options.features, "num_samples": self.options.num_samples,
            "num_real": self.evaluator.num_real}

  def _previous_best(self) -> float:
    """The FID of a best checkpoint an earlier (resumed) run left, if measured alike."""
    manager = self.best_manager
    for step in manager.all_steps():
      saved = manager.metrics(step) or {}
      if {name: saved.get(name) for name in self.settings()} == self.settings():
        logging.info("eval: best checkpoint so far: step %d, FID %.4f", step, saved["fid"])
        return float(saved["fid"])
      # Not comparable with this run's FIDs: the next evaluation replaces it.
      logging.warning("eval: deleting best checkpoint %d of %s: it was measured with %s, not %s",
                      step, manager.directory, {n: saved.get(n) for n in self.settings()},
                      self.settings())
      manager.delete(step)
    return math.inf

  def is_eval_step(self, step: int) -> bool:
    return cadence.is_due(step, self.every, self.num_steps)

  def evaluate(self, step: int, state: GANState) -> dict[str, float]:
    """FID and KID of the state's generator (EMA weights if kept), logged at `step`."""
    start = time.perf_counter()
    self.model.state, self.model.step = sampling_state(self.model.gan, state), step
    metrics = self.evaluator.evaluate(self.model.generate)
    self.monitor.write_scalars(step, {f"eval/{name}": value for name, value in metrics.items()})
    improved = metrics["fid"] < self.best_fid
    logging.info("step %d: FID %.4f, KID %.5f ± %.5f (%d samples, %s features, %.1f s)%s", step,
                 metrics["fid"], metrics["kid"], metrics["kid_std"], len(self.evaluator.latents),
                 self.options.features, time.perf_counter() - start,
                 ", best so far" if improved else f"; best {self.best_fid:.4f}")
    if "fid_heldout" in metrics:
      logging.info("step %d: held-out FID %.4f, KID %.5f (%d held-out faces; real-vs-real floor "
                   "FID %.4f, KID %.5f)", step, metrics["fid_heldout"], metrics["kid_heldout"],
                   self.evaluator.num_heldout, metrics["fid_floor_heldout"],
                   metrics["kid_floor_heldout"])
    if improved and self.best_manager is not None:
      self._save_best(step, state, metrics)
    self.best_fid = min(self.best_fid, metrics["fid"])
    return metrics

  def _save_best(self, step: int, state: GANState, metrics: dict) -> None:
    if step in self.best_manager.all_steps():
      return  # a resumed run re-evaluating a step it already kept: the same weights
    checkpoint.save(self.best_manager, state, input_pipeline.pipeline_state(step, self.config.seed),
                    self.config, step=step, metrics={**metrics, **self.settings()})
    # Saved now, before the next step donates the state's buffers; Orbax keeps the lowest FID.
    self.best_manager.wait_until_finished()
