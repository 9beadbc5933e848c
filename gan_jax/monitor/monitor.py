"""What the training loop reports: averaged metrics, sample grids, progress, collapse warnings.

`Monitor.step` runs after every train step. It adds the step's metrics to a
running sum on device (a jitted add, no host transfer) and only at log points
fetches the average, so the loop never waits for the device in between.

Scalars and images go through `writer.RunWriter` (TensorBoard and
WORKDIR/metrics.jsonl); the console gets one line per log step. Only process 0
writes.
"""

from __future__ import annotations

import datetime
import pathlib
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from gan_jax import cadence
from gan_jax import images as image_lib
from gan_jax.errors import NonFiniteLossError
from gan_jax.monitor import collapse, progress
from gan_jax.monitor.writer import SAMPLES_DIR, RunWriter


@jax.jit
def _accumulate(sums, counts, metrics):
  """Add the finite metrics to `sums`, and count them: one bad step does not hide the others."""
  finite = jax.tree.map(jnp.isfinite, metrics)
  sums = jax.tree.map(lambda s, x, ok: s + jnp.where(ok, x, 0.0), sums, metrics, finite)
  counts = jax.tree.map(lambda c, ok: c + ok, counts, finite)
  return sums, counts


@jax.jit
def _zeros(metrics):
  zeros = jax.tree.map(lambda x: jnp.zeros_like(x, jnp.float32), metrics)
  return zeros, zeros


class MetricAverager:
  """Sums per-step metrics on device; `mean` fetches their average and starts over.

  Only `mean` moves data to the host. Non-finite values are left out of the
  sums and counted; a metric with no finite value in the interval averages NaN.
  """

  def __init__(self, fetch: Callable[[Any], dict[str, float]]):
    self._fetch = fetch  # device metrics -> host floats (the only host transfer)
    self._sums = self._counts = None
    self.num_steps = 0

  def add(self, metrics: Mapping[str, jax.Array]) -> None:
    metrics = dict(metrics)
    if self._sums is None:
      self._sums, self._counts = _zeros(metrics)
    self._sums, self._counts = _accumulate(self._sums, self._counts, metrics)
    self.num_steps += 1

  def mean(self) -> tuple[dict[str, float], dict[str, int]]:
    """(mean of each metric over its finite values, number of non-finite steps of each)."""
    sums, counts = self._fetch(self._sums), self._fetch(self._counts)
    means = {name: sums[name] / counts[name] if counts[name] else float("nan") for name in sums}
    nonfinite = {name: self.num_steps - round(count) for name, count in counts.items()}
    self._sums = self._counts = None
    self.num_steps = 0
    return means, nonfinite


def _learning_rate(opt_state) -> jax.Array | None:
  """The current learning rate of an optax.inject_hyperparams optimiser, if there is one."""
  has_hyperparams = lambda x: isinstance(getattr(x, "hyperparams", None), dict)
  for node in jax.tree.leaves(opt_state, is_leaf=has_hyperparams):
    if has_hyperparams(node) and "learning_rate" in node.hyperparams:
      return node.hyperparams["learning_rate"]
  return None


def format_duration(seconds: float) -> str:
  return str(datetime.timedelta(seconds=round(seconds)))


class Monitor:
  """Metrics, samples, progress and collapse checks for one training run.

  Call `step` after every train step, `samples` with the fixed-noise images at
  sample steps, and `close` at the end (it writes the plots). `should_stop`
  turns True when a collapse detector fires and `monitor.stop_on_collapse` is set.
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
               fetch: Callable[[Any], dict[str, float]], real_images: np.ndarray,
               steps_per_epoch: int, start_step: int = 0):
    collapse.check_config(config.monitor)
    self.config, self.workdir = config, pathlib.Path(workdir)
    self.num_steps, self.batch_size = config.train.num_steps, config.train.batch_size
    self.steps_per_epoch, self.first_step = steps_per_epoch, start_step + 1
    self.is_writer = jax.process_index() == 0
    self._fetch = fetch
    self._averager = MetricAverager(fetch)
    self.writer = RunWriter(self.workdir, steps_per_epoch, active=self.is_writer)
    # The bar on a terminal (process 0); its losses are the log steps' fetched averages.
    self.progress = progress.TrainProgress(self.num_steps, self.batch_size, enabled=self.is_writer)
    self._last_log: tuple[int, float] | None = None
    self._closed = False
    self.should_stop = False
    monitor = config.monitor
    self.d_overpowering = collapse.DOverpowering(monitor.d_fake_threshold, monitor.patience,
                                                 config.loss.name)
    self.mode_collapse = collapse.ModeCollapse(monitor.diversity_fraction,
                                               collapse.real_diversity(real_images))
    if self.is_writer:
      logging.info("%s", self.d_overpowering.describe())
      say = logging.info if self.mode_collapse.enabled else logging.warning
      say("%s", self.mode_collapse.describe(len(real_images)))

  def is_log_step(self, step: int) -> bool:
    # The first step is logged too: early feedback, and the timer then starts after compilation.
    return step == self.first_step or cadence.is_due(step, self.config.log_every, self.num_steps)

  def step(self, step: int, metrics: Mapping[str, jax.Array], state) -> None:
    """Account for one finished train step (host-side only, except at log steps)."""
    self._averager.add(metrics)
    if self.is_log_step(step):
      self._log(step, state)
    self.progress.update(step)

  def _learning_rates(self, state) -> dict[str, float]:
    """Read from the optimiser states when they hold a schedule's value, else from the config."""
    rates = {"g_lr": _learning_rate(state.g_opt_state), "d_lr": _learning_rate(state.d_opt_state)}
    found = self._fetch({name: rate for name, rate in rates.items() if rate is not None})
    defaults = {"g_lr": self.config.optim.g_lr, "d_lr": self.config.optim.d_lr}
    return {name: found.get(name, defaults[name]) for name in rates}

  def _timing(self, step: int) -> dict[str, float]:
    """step_time and images_per_sec since the last log step (none at the first)."""
    now, last = time.perf_counter(), self._last_log
    self._last_log = (step, now)
    if last is None:
      return {}
    # Wall time per step since the last log, so it includes sampling and checkpoints.
    step_time = (now - last[1]) / (step - last[0])
    return {"step_time": step_time, "images_per_sec": self.batch_size / step_time}

  def _log(self, step: int, state) -> None:
    interval = self._averager.num_steps
    scalars, nonfinite = self._averager.mean()
    bad_steps = max(nonfinite.get("d_loss", 0), nonfinite.get("g_loss", 0))
    scalars["collapse/non_finite"] = bad_steps / interval
    scalars.update(self._learning_rates(state))
    scalars.update(self._timing(step))
    try:
      collapse.check_finite(step, scalars)  # raises when no step of the interval was finite
    except NonFiniteLossError:
      self.writer.write_scalars(step, scalars)
      self.close()
      raise
    if bad_steps and self.is_writer:
      logging.warning("step %d: %d of the last %d steps had non-finite losses", step, bad_steps,
                      interval)
    warning = self.d_overpowering.update(step, scalars)
    scalars["collapse/d_overpowering"] = float(self.d_overpowering.active)
    self.writer.write_scalars(step, scalars)
    if self.is_writer:
      logging.info("%s", self._console_line(step, scalars))
      self.progress.show(step, scalars)
    self._warn(warning)

  def _console_line(self, step: int, s: Mapping[str, float]) -> str:
    """'step 200/20520 d_loss=... | 330 img/s, eta 0:32:53' (the rate and eta from the 2nd log)."""
    line = f"step {step}/{self.num_steps} d_loss={s['d_loss']:.4f} g_loss={s['g_loss']:.4f}"
    # D's outputs as the loss reads them (training/losses.py): probabilities or raw outputs.
    for name in ("d_real", "d_fake", "d_real_logit", "d_fake_logit", "d_real_acc", "d_fake_acc",
                 "ada_p"):
      if name in s:
        line += f" {name}={s[name]:.3f}"
    if "recon_loss" in s:  # a VAE-GAN's (training/vaegan_step.py)
      line += f" recon={s['recon_loss']:.4f} kl={s['kl']:.4f}"
    if "g_grad_norm" in s:
      line += f" grad_norm g={s['g_grad_norm']:.3g} d={s['d_grad_norm']:.3g}"
    line += f" lr g={s['g_lr']:.3g} d={s['d_lr']:.3g}"
    if "step_time" in s:
      eta = format_duration(s["step_time"] * (self.num_steps - step))
      line += f" | {s['images_per_sec']:.0f} img/s, eta {eta}"
    return line

  def samples(self, step: int, images: jax.Array) -> None:
    """Write the fixed-noise sample grid (PNG + TensorBoard) and check its diversity."""
    diversity = collapse.mean_pairwise_distance(images)  # on device, fetched with the images
    images, diversity = jax.device_get((images, diversity))
    diversity = float(diversity)
    warning = self.mode_collapse.update(step, diversity)
    ratio = self.mode_collapse.ratio(diversity)  # None: the real faces have no diversity
    if self.is_writer:
      grid = image_lib.make_grid(images)
      path = image_lib.save_png(self.workdir / SAMPLES_DIR / f"step_{step:07d}.png", grid)
      if ratio is None:
        logging.info("wrote %s (diversity %.3f)", path, diversity)
      else:
        logging.info("wrote %s (diversity %.3f of real)", path, ratio)
      self.writer.write_images(step, {"samples": grid})
    scalars = {"sample_diversity": diversity, "collapse/diversity_ratio": ratio,
               "collapse/mode_collapse": float(self.mode_collapse.active)}
    self.writer.write_scalars(step, {name: value for name, value in scalars.items()
                                     if value is not None})
    self._warn(warning)

  def reconstructions(self, step: int, real: np.ndarray, reconstructed: jax.Array) -> None:
    """Write a VAE-GAN's fixed real faces above their reconstructions (PNG + TensorBoard)."""
    if not self.is_writer:
      return
    real = image_lib.to_uint8(real)
    reconstructed = image_lib.to_uint8(jax.device_get(reconstructed))
    columns = min(8, len(real))
    rows = [part[start:start + columns] for start in range(0, len(real) - columns + 1, columns)
            for part in (real, reconstructed)]
    grid = image_lib.make_grid(np.concatenate(rows), columns=columns)
    path = image_lib.save_png(self.workdir / SAMPLES_DIR / "reconstructions" /
                              f"step_{step:07d}.png", grid)
    logging.info("wrote %s (real faces above their reconstructions)", path)
    self.writer.write_images(step, {"reconstructions": grid})

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Log scalars measured outside the train step (e.g. eval/fid): TensorBoard and metrics.jsonl."""
    self.writer.write_scalars(step, scalars)

  def _warn(self, warning: str | None) -> None:
    if warning is None:
      return
    logging.warning("%s", warning)
    if self.config.monitor.stop_on_collapse:
      logging.error("stopping training: monitor.stop_on_collapse is set")
      self.should_stop = True

  def close(self) -> None:
    """Flush the writers and draw the curves and the progress GIF (process 0)."""
    if self._closed:
      return
    self._closed = True
    self.progress.close()
    self.writer.close()
    if self.is_writer:
      try:
        from gan_jax.monitor import plots
        for path in plots.write_plots(self.workdir):
          logging.info("wrote %s", path)
      except ImportError as e:
        logging.warning("no training plots (%s); install matplotlib and imageio", e)
