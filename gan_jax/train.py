"""The training loop: data, state and step are built here and run to the end."""

from __future__ import annotations

import itertools
import os
import pathlib
import signal
import threading

import jax
import ml_collections
from absl import logging

from gan_jax import checkpoint, distributed, parallel
from gan_jax.data import pipeline as input_pipeline
from gan_jax.monitor import monitor as monitoring
from gan_jax.data import prepare
from gan_jax.eval import evaluator as periodic_eval
from gan_jax.training.state import GANState, create_state
from gan_jax.training.gan import GAN
from gan_jax.training.step import make_train_step

# Independent random streams derived from config.seed.
SAMPLE_NOISE_STREAM = 1


def fixed_sample_noise(config: ml_collections.ConfigDict) -> jax.Array:
  """The latents of the sample grid: the same for the whole run (and its resumes)."""
  key = jax.random.fold_in(jax.random.key(config.seed), SAMPLE_NOISE_STREAM)
  return jax.random.normal(key, (config.num_sample_images, config.model.latent_dim))


def use_deterministic_ops(config: ml_collections.ConfigDict) -> None:
  """With train.deterministic, ask XLA for run-to-run deterministic GPU kernels.

  XLA reads XLA_FLAGS once, when JAX starts its backend, so call this first
  (gan_jax.main does). CPU results are deterministic without it.
  """
  if not config.train.get("deterministic", True):
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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> GANState:
  """Train the GAN that `config` describes; samples, logs, plots and checkpoints go to workdir."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)

  gan = GAN.from_config(config)
  # Before any data is read or anything compiled; pmap splits over all processes' devices too.
  parallel.check_batch_size(config.train.batch_size, jax.device_count())
  # A raw image folder is prepared once into the cache; the array is memory-mapped.
  faces = prepare.training_images(config.data.path, config.data.resolution, config.data.crop,
                                  config.data.cache_dir, limit=config.data.limit or None)
  input_pipeline.check_batch_size(config.train.batch_size, len(faces), jax.process_count())
  pipeline = input_pipeline.choose_pipeline(config.data.pipeline, faces,
                                            config.data.device_budget_mb)
  logging.info("data: %d images of %dx%d from %s, %s pipeline", len(faces), faces.shape[1],
               faces.shape[2], config.data.path, pipeline)
  step_fn = make_train_step(gan)
  if pipeline == "device":
    # The data set sits on every device; each step gathers its own batch there.
    step_fn = input_pipeline.device_resident_step(step_fn, len(faces), config.seed,
                                                  config.train.batch_size, config.data.hflip)
  runner = parallel.DataParallel(step_fn, config.parallel, replicated_data=pipeline == "device")

  manager = checkpoint.make_manager(workdir, config.checkpoint_keep)
  if manager.latest_step() is None:
    state = jax.jit(lambda key: create_state(gan, key))(jax.random.key(config.seed))
    start_step = 0
    logging.info("no checkpoint in %s: starting at step 0", manager.directory)
  else:
    # Straight onto this run's devices, however many the saving run had; refuses
    # a changed config and falls back past a damaged latest checkpoint.
    abstract = checkpoint.abstract_state(gan, config, runner.state_sharding)
    state, data_position = checkpoint.restore(manager, abstract, config=config, move_damaged=True)
    start_step = input_pipeline.start_step_from(data_position, config.seed)
    logging.info("resumed from step %d of %s", start_step, manager.directory)
  # Every path reads the batch of step s as a function of (seed, s): resuming is exact.
  if pipeline == "device":
    batches = itertools.repeat(runner.put_replicated(faces))  # the step picks its batch
  else:
    batches = input_pipeline.host_batches(pipeline, faces, runner.put_batch,
                                          config.train.batch_size, config.seed, start_step,
                                          config.data.hflip)

  # The step draws its randomness from the run's key; it gets its own copy
  # because the state, key included, is donated to the step.
  run_key = runner.put_key(jax.random.wrap_key_data(jax.random.key_data(state.key).copy()))
  state = runner.put_state(state)
  sample_noise, sample_fn = fixed_sample_noise(config), jax.jit(gan.sample)
  monitor = monitoring.Monitor(config, workdir, fetch=runner.get_metrics,
                               real_images=faces[:config.num_sample_images],
                               steps_per_epoch=len(faces) // config.train.batch_size,
                               start_step=start_step)
  evaluator = periodic_eval.PeriodicEval(config, workdir, gan, monitor)  # eval.every > 0: FID

  num_steps = config.train.num_steps
  logging.info("training %d steps on %d devices (%s)", num_steps, runner.num_devices, runner.mode)
  stop = StopOnSignal()
  for step in range(start_step + 1, num_steps + 1):
    state, metrics = runner.step(state, next(batches), run_key)
    monitor.step(step, metrics, state)  # averages on device; fetches only at log steps
    if step % config.sample_every == 0 or step == num_steps:
      monitor.samples(step, sample_fn(runner.get_state(state), sample_noise))
    if evaluator.is_eval_step(step):
      evaluator.evaluate(step, runner.get_state(state))
    stopping = stop.requested
    if jax.process_count() > 1:  # all processes must save and stop at the same step
      stopping = step % config.log_every == 0 and distributed.any_process(stop.requested)
    if step % config.checkpoint_every == 0 or step == num_steps or stopping:
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
