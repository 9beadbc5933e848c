"""The training loop: data, state and step are built here and run to the end.

`train_and_evaluate` reads top to bottom: the GAN, the faces and their input
path, the runner (the step on every device), the state (restored or new), the
monitor and the evaluator, then the loop. It only trains: the process's
set-up (checks, the workdir's lock, log file and run record) is
`gan_jax.start.run`'s. `initial_state` and `place_state`
are the set-up that `gan_jax.bench` shares with it.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import signal
import threading
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np
from absl import logging

from gan_jax import cadence, checkpoint, distributed, parallel, streams
from gan_jax import images as image_lib
from gan_jax.data import pipeline as input_pipeline
from gan_jax.eval.evaluator import PeriodicEval
from gan_jax.monitor.monitor import Monitor
from gan_jax.training.gan import GAN
from gan_jax.training import family
from gan_jax.training.state import GANState
from gan_jax.data import loader as data_loader

# Compiled once per GAN (a frozen dataclass, hashed as a static argument).
_create_state = jax.jit(family.create_state, static_argnums=0)


def fixed_sample_noise(config: ml_collections.ConfigDict) -> jax.Array:
  """The latents of the sample grid: the same for the whole run (and its resumes)."""
  return jax.random.normal(streams.sample_noise_key(config.seed),
                           (config.num_sample_images, config.model.latent_dim))


def use_deterministic_ops(config: ml_collections.ConfigDict) -> None:
  """With train.deterministic, ask XLA for run-to-run deterministic GPU kernels.

  XLA reads XLA_FLAGS once, when JAX starts its backend, so call this first
  (gan_jax.main does). CPU results are deterministic without it.
  """
  if not config.train.deterministic:
    return
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_gpu_deterministic_ops" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()


class StopOnSignal:
  """SIGTERM/SIGINT (preemption, Ctrl-C) -> a flag the loop reads once per step.

  The loop then saves the current step and returns. A second signal gets the
  previous handler, so a second Ctrl-C stops at once.
  """

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
    self.received = None  # the signal's name once one arrived
    self._previous = {}
    if threading.current_thread() is threading.main_thread():  # Python allows no other
      for signum in signals:
        self._previous[signum] = signal.signal(signum, self._handle)

  @property
  def requested(self) -> bool:
    return self.received is not None

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name
    signal.signal(signum, self._previous.get(signum) or signal.SIG_DFL)
    logging.warning("%s: stopping after this step with a checkpoint", self.received)

  def uninstall(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler or signal.SIG_DFL)
    self._previous = {}


def load_faces(config: ml_collections.ConfigDict) -> tuple[np.ndarray, str]:
  """The run's uint8 faces and the input path that feeds them: 'device', 'tfdata' or 'numpy'."""
  # A raw image folder is prepared once into the cache; the array is memory-mapped.
  faces = data_loader.run_training_images(config.data)  # data.holdout's faces left out
  input_pipeline.check_batch_size(config.train.batch_size, len(faces), jax.process_count())
  pipeline = input_pipeline.choose_pipeline(config.data.pipeline, faces,
                                            config.data.device_budget_mb)
  logging.info("data: %d images of %dx%d from %s, %s pipeline", len(faces), faces.shape[1],
               faces.shape[2], config.data.path, pipeline)
  return faces, pipeline


def make_runner(gan: GAN, config: ml_collections.ConfigDict, pipeline: str,
                num_examples: int) -> parallel.DataParallel:
  """The train step on every device; on the device path it gathers its own batch."""
  step_fn = family.make_train_step(gan)  # the family's own step (a VAE-GAN's: vaegan_step)
  if pipeline == "device":
    # The data set sits on every device; each step gathers its own batch there.
    step_fn = input_pipeline.device_resident_step(step_fn, num_examples, config.seed,
                                                  config.train.batch_size, config.data.hflip)
  return parallel.DataParallel(step_fn, config.parallel, replicated_data=pipeline == "device")


def initial_state(gan: GAN, seed: int) -> GANState:
  """The state of step 0: both networks and optimisers initialised from key(seed)."""
  return _create_state(gan, jax.random.key(seed))


def restore_or_start(manager, gan: GAN, config: ml_collections.ConfigDict,
                     runner: parallel.DataParallel) -> tuple[GANState, int]:
  """(state, step): the latest checkpoint's, or the initial state at step 0 when there is none."""
  if manager.latest_step() is None:
    logging.info("no checkpoint in %s: starting at step 0", manager.directory)
    return initial_state(gan, config.seed), 0
  # Straight onto this run's devices, however many the saving run had; refuses
  # a changed config and falls back past a damaged latest checkpoint.
  abstract = checkpoint.abstract_state(gan, config, runner.state_sharding)
  state, data_position = checkpoint.restore(manager, abstract, config=config, move_damaged=True)
  start_step = input_pipeline.start_step_from(data_position, config.seed)
  logging.info("resumed from step %d of %s", start_step, manager.directory)
  return state, start_step


def place_state(runner: parallel.DataParallel, state: GANState) -> tuple[GANState, jax.Array]:
  """(the state on the runner's devices, the run key that the step takes as an argument).

  The step gets its own copy of the key because the state, key included, is
  donated to it.
  """
  run_key = runner.put_key(jax.random.wrap_key_data(jax.random.key_data(state.key).copy()))
  return runner.put_state(state), run_key


def input_batches(pipeline: str, faces: np.ndarray, runner: parallel.DataParallel,
                  config: ml_collections.ConfigDict, start_step: int) -> Iterator[Any]:
  """What the step takes as its batch argument at each step from `start_step` + 1 on."""
  # Every path reads the batch of step s as a function of (seed, s): resuming is exact.
  if pipeline == "device":
    return itertools.repeat(runner.put_replicated(faces))  # the step picks its batch
  return input_pipeline.host_batches(pipeline, faces, runner.put_batch, config.train.batch_size,
                                     config.seed, start_step, config.data.hflip)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path
                       ) -> GANState:
  """Train the GAN that `config` describes; samples, logs, plots and checkpoints go to workdir.

  Only the training: the start's checks, the workdir's lock, log file and run
  record are `gan_jax.start.run`'s, which calls this.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  gan = family.bundle(config)  # GAN, or the family's own bundle (VAEGAN)
  faces, pipeline = load_faces(config)
  runner = make_runner(gan, config, pipeline, len(faces))
  manager = checkpoint.make_manager(workdir, config.checkpoint_keep)
  state, start_step = restore_or_start(manager, gan, config, runner)
  batches = input_batches(pipeline, faces, runner, config, start_step)
  state, run_key = place_state(runner, state)

  sample_noise, sample_fn = fixed_sample_noise(config), jax.jit(gan.sample)
  # The fixed real faces: the monitor's diversity reference and, with an encoder, the faces
  # whose reconstructions are drawn beside the samples.
  real_faces = faces[:config.num_sample_images]
  reconstruct_fn = jax.jit(gan.reconstruct) if family.of(config).has_encoder else None
  steps_per_epoch = input_pipeline.steps_per_epoch(len(faces), config.train.batch_size)
  monitor = Monitor(config, workdir, fetch=runner.get_metrics, real_images=real_faces,
                    steps_per_epoch=steps_per_epoch, start_step=start_step)
  evaluator = PeriodicEval(config, workdir, gan, monitor)  # eval.every > 0: FID

  num_steps = config.train.num_steps
  logging.info("training %d steps on %d devices (%s)", num_steps, runner.num_devices, runner.mode)
  stop = StopOnSignal()
  for step in range(start_step + 1, num_steps + 1):
    state, metrics = runner.step(state, next(batches), run_key)
    monitor.step(step, metrics, state)  # averages on device; fetches only at log steps
    if cadence.is_due(step, config.sample_every, num_steps):
      monitor.samples(step, sample_fn(runner.get_state(state), sample_noise))
      if reconstruct_fn is not None:  # a VAE-GAN: the fixed real faces and their reconstructions
        monitor.reconstructions(step, real_faces, reconstruct_fn(
            runner.get_state(state), image_lib.to_float(real_faces)))
    if evaluator.is_eval_step(step):
      evaluator.evaluate(step, runner.get_state(state))
    stopping = stop.requested
    if jax.process_count() > 1:  # all processes must save and stop at the same step
      stopping = cadence.is_due(step, config.log_every) and distributed.any_process(stop.requested)
    if stopping or cadence.is_due(step, config.checkpoint_every, num_steps):
      checkpoint.save(manager, runner.get_state(state),
                      input_pipeline.pipeline_state(step, config.seed), config, step=step)
    if stopping:
      logging.warning("%s: saved step %d to %s; rerun the same command to resume",
                      stop.received or "signal to another process", step, manager.directory)
      break
    if monitor.should_stop:
      break
  monitor.close()  # also draws the curves and the progress GIF
  manager.wait_until_finished()
  stop.uninstall()
  return runner.get_state(state)
