"""The training loop: data, state and step are built here and run to the end."""

from __future__ import annotations

import pathlib

import jax
import ml_collections
from absl import logging

from gan_jax import images as image_lib
from gan_jax import checkpoint, input_pipeline, parallel, prepare
from gan_jax.state import GANState, create_state
from gan_jax.train_step import GAN, make_train_step

# Independent random streams derived from config.seed.
SAMPLE_NOISE_STREAM = 1


def fixed_sample_noise(config: ml_collections.ConfigDict) -> jax.Array:
  """The latents of the sample grid: the same for the whole run (and its resumes)."""
  key = jax.random.fold_in(jax.random.key(config.seed), SAMPLE_NOISE_STREAM)
  return jax.random.normal(key, (config.num_sample_images, config.model.latent_dim))


def save_sample_grid(workdir: pathlib.Path, step: int, gan: GAN, state: GANState,
                     noise: jax.Array, sample_fn) -> pathlib.Path:
  grid = image_lib.make_grid(jax.device_get(sample_fn(state, noise)))
  return image_lib.save_png(workdir / "samples" / f"step_{step:07d}.png", grid)


def log_metrics(step: int, metrics: dict[str, float]) -> None:
  logging.info("step %d: %s", step, " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> GANState:
  """Train the GAN that `config` describes, writing samples (and later checkpoints) to workdir."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)

  gan = GAN.from_config(config)
  runner = parallel.DataParallel(make_train_step(gan), config.parallel)
  parallel.check_batch_size(config.train.batch_size, runner.num_devices)

  faces = prepare.load_image_array(config.data.path, config.data.resolution, config.data.crop,
                                   limit=config.data.limit or None)
  logging.info("data: %d images of %dx%d from %s", len(faces), faces.shape[1], faces.shape[2],
               config.data.path)
  state = jax.jit(lambda key: create_state(gan, key))(jax.random.key(config.seed))
  manager = checkpoint.make_manager(workdir)
  if manager.latest_step() is not None:
    state, _ = checkpoint.restore(manager, state)
    logging.info("resumed from step %d in %s", int(state.step), manager.directory)
  start_step = int(state.step)
  batches = input_pipeline.numpy_batches(
      faces, config.train.batch_size, config.seed, start_step,
      jax.process_index(), jax.process_count())

  # The step draws its randomness from the run's key; it gets its own copy
  # because the state, key included, is donated to the step.
  run_key = runner.put_state(jax.random.wrap_key_data(jax.random.key_data(state.key).copy()))
  state = runner.put_state(state)
  sample_noise, sample_fn = fixed_sample_noise(config), jax.jit(gan.sample)

  num_steps = config.train.num_steps
  logging.info("training %d steps on %d devices (%s)", num_steps, runner.num_devices, runner.mode)
  for step in range(start_step + 1, num_steps + 1):
    state, metrics = runner.step(state, runner.put_batch(next(batches)), run_key)
    if step % config.log_every == 0 or step == num_steps:
      log_metrics(step, runner.get_metrics(metrics))
    if step % config.sample_every == 0 or step == num_steps:
      path = save_sample_grid(workdir, step, gan, runner.get_state(state), sample_noise, sample_fn)
      logging.info("wrote %s", path)
    if step % config.checkpoint_every == 0 or step == num_steps:
      checkpoint.save(manager, runner.get_state(state), {"step": step, "seed": config.seed}, config)
  manager.wait_until_finished()
  return runner.get_state(state)
