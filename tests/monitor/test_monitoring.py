"""Metric averaging, writers, the no-host-sync property, and a monitored training run."""

import json
import logging as std_logging
import types
from typing import Any, NamedTuple

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from tensorboard.backend.event_processing import event_accumulator

from configs import tiny
from gan_jax import parallel, train
from gan_jax.monitor import collapse
from gan_jax.monitor import monitor as monitoring
from gan_jax.monitor import writer as writer_lib
from gan_jax.parallel import BATCH_AXIS

TRAIN_SCALARS = ("d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm", "d_grad_norm",
                 "g_lr", "d_lr", "images_per_sec", "step_time")
COLLAPSE_SCALARS = ("collapse/d_overpowering", "collapse/mode_collapse", "collapse/non_finite",
                    "collapse/diversity_ratio")


def host_floats(metrics):
  return {name: float(value) for name, value in jax.device_get(metrics).items()}


def read_events(logdir):
  """(accumulator, scalar tags, image tags) of the event files in logdir, either writer's format."""
  acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={
      event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
  acc.Reload()
  tags = acc.Tags()
  scalars, images = set(tags["scalars"]), set(tags["images"])
  for tag in tags["tensors"]:  # TF2-style summaries: the plugin says what the tensor is
    plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
    {"scalars": scalars, "images": images}.get(plugin, set()).add(tag)
  return acc, scalars, images


class HostReads:
  """Counts reads of device arrays into host memory (np.asarray, float, device_get, ...).

  jax's transfer guard does not fire on the CPU backend, whose arrays already live
  in host memory; every such read still goes through `ArrayImpl._value`.
  """

  def __init__(self, monkeypatch):
    cls = type(jnp.zeros(()))
    original = cls._value
    self.count = 0

    def counting(array):
      self.count += 1
      return original.fget(array)

    monkeypatch.setattr(cls, "_value", property(counting))


def test_host_reads_counter_sees_a_read(monkeypatch):
  reads = HostReads(monkeypatch)
  x = jnp.arange(3.0) + 1
  jax.block_until_ready(x)
  assert reads.count == 0
  float(x.sum())
  assert reads.count == 1


def test_averager_averages_on_device_and_skips_non_finite_steps():
  fetches = []

  def fetch(metrics):
    fetches.append(1)
    return host_floats(metrics)

  averager = monitoring.MetricAverager(fetch)
  for d_loss, g_loss in [(1.0, 2.0), (3.0, np.nan), (5.0, 4.0)]:
    averager.add({"d_loss": jnp.float32(d_loss), "g_loss": jnp.float32(g_loss)})
  assert not fetches  # nothing left the device while adding
  means, nonfinite = averager.mean()
  assert means == pytest.approx({"d_loss": 3.0, "g_loss": 3.0})
  assert nonfinite == {"d_loss": 0, "g_loss": 1}
  averager.add({"d_loss": jnp.float32(np.inf), "g_loss": jnp.float32(1.0)})
  means, nonfinite = averager.mean()  # a fresh interval
  assert np.isnan(means["d_loss"]) and means["g_loss"] == 1.0
  assert nonfinite == {"d_loss": 1, "g_loss": 0}


def make_monitor(tmp_path, config=None, fetch=host_floats):
  config = config or tiny.get_config()
  real = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
  return monitoring.Monitor(config, tmp_path, fetch=fetch, real_images=real, steps_per_epoch=10)


class ToyState(NamedTuple):
  step: jax.Array
  g_opt_state: Any
  d_opt_state: Any


def toy_step(state, batch, key):
  """Stands in for the train step (same mapped signature, metrics pmean'd over 'batch')."""
  del key
  x = jnp.mean(batch.astype(jnp.float32)) / 255
  metrics = {"d_loss": x, "g_loss": 2 * x, "d_real": x, "d_fake": 1 - x}
  return state._replace(step=state.step + 1), lax.pmean(metrics, BATCH_AXIS)


@pytest.mark.parametrize("mode", ["shard_map", "pmap"])
def test_loop_reads_nothing_from_device_between_log_steps(tmp_path, monkeypatch, mode):
  """A mapped step + Monitor.step, as in train.py: host reads happen at log steps only."""
  config = tiny.get_config()
  config.log_every, config.train.num_steps = 4, 8
  runner = parallel.DataParallel(toy_step, mode)
  # Two separate states: the step donates its input, and a buffer cannot be donated twice.
  g_opt_state, d_opt_state = (optax.inject_hyperparams(optax.adam)(learning_rate=lr).init(
      jnp.zeros(3)) for lr in (0.01, 0.02))
  state = runner.put_state(ToyState(jnp.zeros((), jnp.int32), g_opt_state, d_opt_state))
  key = runner.put_key(jax.random.key(1))
  batch = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
  monitor = make_monitor(tmp_path, config, fetch=runner.get_metrics)
  state, metrics = runner.step(state, runner.put_batch(batch), key)
  monitor.step(1, metrics, state)  # a log step; compiles everything

  reads = HostReads(monkeypatch)
  for step in (2, 3):
    state, metrics = runner.step(state, runner.put_batch(batch), key)
    monitor.step(step, metrics, state)
  assert reads.count == 0, "the loop read device values between log steps"
  state, metrics = runner.step(state, runner.put_batch(batch), key)
  monitor.step(4, metrics, state)
  assert reads.count > 0  # the log step fetched the average
  monitor.close()
  record = json.loads((tmp_path / writer_lib.METRICS_FILE).read_text().splitlines()[-1])
  mean = batch.mean() / 255
  assert record["step"] == 4 and record["step_time"] > 0
  assert record["d_loss"] == pytest.approx(mean)
  assert (record["g_lr"], record["d_lr"]) == pytest.approx((0.01, 0.02))


def test_learning_rates_come_from_inject_hyperparams_state(tmp_path):
  params = {"w": jnp.ones(3)}
  scheduled = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
  state = types.SimpleNamespace(g_opt_state=scheduled.init(params),
                                d_opt_state=optax.adam(5e-4).init(params))
  config = tiny.get_config()
  config.optim.d_lr = 7e-4
  monitor = make_monitor(tmp_path, config)
  # G's from its optimiser state; D has none there and falls back to the config.
  assert monitor._learning_rates(state) == pytest.approx({"g_lr": 1e-3, "d_lr": 7e-4})
  monitor.close()


def test_non_finite_interval_stops_with_advice(tmp_path, caplog):
  # Command-line tests run in this process may have quietened absl's logger.
  caplog.set_level(std_logging.WARNING, logger="absl")
  config = tiny.get_config()
  config.log_every = 3  # logs at steps 1, 3, 6
  monitor = make_monitor(tmp_path, config)
  state = types.SimpleNamespace(g_opt_state=(), d_opt_state=())
  good = {"d_loss": jnp.float32(1.0), "g_loss": jnp.float32(1.0), "d_real": jnp.float32(0.6),
          "d_fake": jnp.float32(0.4)}
  monitor.step(1, good, state)
  monitor.step(2, {**good, "g_loss": jnp.float32(np.nan)}, state)
  monitor.step(3, good, state)  # one bad step of two: a warning, training goes on
  assert "step 3: 1 of the last 2 steps had non-finite losses" in caplog.text
  monitor.step(4, {**good, "d_loss": jnp.float32(np.inf)}, state)
  monitor.step(5, {**good, "d_loss": jnp.float32(np.nan)}, state)
  with pytest.raises(collapse.NonFiniteLossError, match=r"step 6: d_loss=nan.*lower learning"):
    monitor.step(6, {**good, "d_loss": jnp.float32(np.nan)}, state)
  last = json.loads((tmp_path / writer_lib.METRICS_FILE).read_text().splitlines()[-1])
  assert last["step"] == 6 and last["collapse/non_finite"] == 1.0


def test_log_line_is_for_people(tmp_path):
  monitor = make_monitor(tmp_path)
  scalars = {"d_loss": 1.25, "g_loss": 0.5, "d_real_logit": 0.75, "d_fake_logit": -0.5,
             "ada_p": 0.125, "g_lr": 2e-4, "d_lr": 1e-4}
  assert monitor._console_line(200, scalars) == (
      "step 200/200 d_loss=1.2500 g_loss=0.5000 d_real_logit=0.750 d_fake_logit=-0.500 "
      "ada_p=0.125 lr g=0.0002 d=0.0001")
  scalars.update(step_time=0.1, images_per_sec=320.0)
  monitor.num_steps = 20520
  assert monitor._console_line(200, scalars).endswith(" | 320 img/s, eta 0:33:52")
  monitor.close()


def test_bad_monitor_option_names_the_flag(tmp_path):
  config = tiny.get_config()
  config.monitor.patience = 0
  with pytest.raises(ValueError, match="monitor.patience=0 must be >= 1"):
    make_monitor(tmp_path, config)


def test_tensorboard_writer_writes_tf2_summaries(tmp_path):
  """Written without TensorFlow (tests/test_console.py: a run imports none), read by TensorBoard."""
  writer = writer_lib.create_summary_writer(tmp_path)
  assert isinstance(writer, writer_lib.TensorBoardWriter)
  grid = np.zeros((10, 14, 3), np.uint8)
  grid[:, :7] = 255
  writer.write_scalars(3, {"d_loss": 0.25, "g_loss": 2.0})
  writer.write_images(3, {"samples": grid})
  writer.close()
  acc, scalars, images = read_events(tmp_path)
  assert scalars == {"d_loss", "g_loss"} and images == {"samples"}
  from tensorboard.util import tensor_util
  (event,) = acc.Tensors("d_loss")
  assert event.step == 3 and tensor_util.make_ndarray(event.tensor_proto) == 0.25
  width, height, png = tensor_util.make_ndarray(acc.Tensors("samples")[0].tensor_proto)
  assert (int(width), int(height)) == (14, 10)
  np.testing.assert_array_equal(iio.imread(png), grid)


def test_training_run_writes_tensorboard_samples_and_plots(faces_dir, tmp_path):
  """A monitored tiny run on real faces: every scalar and image, PNGs, curves and GIF."""
  config = tiny.get_config()
  config.data.path, config.data.limit = str(faces_dir), 256
  config.train.num_steps, config.log_every, config.sample_every = 24, 4, 8
  config.checkpoint_every = 1000
  train.train_and_evaluate(config, str(tmp_path))

  _, scalars, images = read_events(tmp_path)
  assert set(TRAIN_SCALARS + COLLAPSE_SCALARS) <= scalars
  assert "samples" in images
  grids = sorted((tmp_path / "samples").glob("step_*.png"))
  assert [p.name for p in grids] == [f"step_{s:07d}.png" for s in (8, 16, 24)]
  assert (tmp_path / "plots" / "losses.png").stat().st_size > 10_000
  assert (tmp_path / "plots" / "d_scores.png").stat().st_size > 10_000
  gif = iio.imread(tmp_path / "plots" / "progress.gif", index=None)
  assert gif.shape[0] == len(grids)

  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  logs = [r for r in records if "d_loss" in r]
  assert [r["step"] for r in logs] == [1, 4, 8, 12, 16, 20, 24]
  assert logs[-1]["epoch"] == 3.0  # 256 faces / batch 32 = 8 steps per epoch
  # The default config's detectors stay quiet on a healthy run.
  assert not any(r.get(name) for r in records for name in COLLAPSE_SCALARS
                 if name != "collapse/diversity_ratio")
