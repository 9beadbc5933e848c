"""Training throughput of the real GAN step, model-only and with the input pipeline.

  python -m gan_jax.bench --config configs/celeba64.py --batch 128,512 \
      --dtype float32,bfloat16 --json bench.json

For every (batch, dtype) it builds the GAN from the config (train.batch_size and
train.dtype overridden), compiles the step that training runs (`make_train_step`
under `parallel.DataParallel`), warms it up and times it, waiting for the final
state only. Rows per (batch, dtype), one per `--paths` entry:

- model:  the same on-device uint8 batch every step (no input pipeline),
- device: the data set on the device, each step gathering its own batch
          (`data.pipeline.device_resident_step`, what data.pipeline=device runs),
- numpy:  batches gathered on the host and put on the device two steps ahead
          (`data.pipeline.host_batches`, what data.pipeline=numpy runs),
- tfdata: the same through tf.data (data.pipeline=tfdata; only when asked for,
          as it needs TensorFlow).

A dtype `float32/bfloat16` sets train.dtype=float32 and train.conv_dtype=bfloat16
(the convolutions' operands in bfloat16, summed in float32; the fast CPU mode); a dtype
without `/` keeps the config's train.conv_dtype (by default `auto`: bfloat16 products on
CPUs with bfloat16 dot instructions), and the dtype column shows what the products ran in.
FLOPs per image are XLA's count for the step lowered for the CPU
(`device_costs.model_flops`; the same on every device; of the plain maths where a
family's CPU forms compute fewer products: `family.counted_config`); MFU divides the
achieved FLOP/s by the peak for the products' dtype: a GPU's datasheet figure, or on a
CPU cores x FLOPs per cycle x clock (gan_jax/cpu_peak.py); --peak_gflops overrides it.
Images are random uint8 unless --config.data.path names real ones; then they are
the faces training reads (data.limit applied, data.holdout's set aside). This module
imports neither TensorFlow nor clu (the tfdata row imports TensorFlow).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import pathlib
import sys
import time
from typing import Any, Callable, Iterator

from absl import app, flags

from gan_jax import cli, device_costs
from gan_jax.config import options
from gan_jax.errors import ConfigError
from gan_jax.data import loader as data_loader

FLAGS = flags.FLAGS

options.define_config_flag("Training configuration file (configs/*.py, or your own), by any path.")
flags.DEFINE_list("batch", None, "Global batch sizes to time (default: the config's).")
flags.DEFINE_list("dtype", None, "Computation dtypes to time, float32 and/or bfloat16, each "
                  "optionally /CONV_DTYPE for the convolutions' operands (train.conv_dtype), e.g. "
                  "float32/bfloat16 (default: the config's train.dtype).")
flags.DEFINE_integer("steps", 50, "Timed training iterations per window.")
flags.DEFINE_integer("warmup", 5, "Untimed iterations after compiling.")
flags.DEFINE_integer("repeats", 3, "Timed windows per row; the fastest is reported.")
flags.DEFINE_integer("scan", 1, "Training iterations per compiled call (lax.scan); > 1 hides "
                     "per-call dispatch at small batches.")
flags.DEFINE_integer("devices", 1, "Devices to run on (0: all); 1 compares with a one-GPU "
                     "PyTorch run.")
flags.DEFINE_list("paths", ["model", "device", "numpy"], "Rows per (batch, dtype): model, "
                  "device, numpy, tfdata (needs TensorFlow).")
flags.DEFINE_integer("num_images", 4096, "Random images in the data set of the device/numpy "
                     "rows (raised to fit two global batches per call).")
flags.DEFINE_string("json", "", "Write the results here.")
flags.DEFINE_float("peak_gflops", None, "The peak GFLOP/s that the MFU column divides by, all "
                   "devices together, instead of the derived one (a GPU's datasheet figure; on a "
                   "CPU cores x FLOPs per cycle x clock, gan_jax/cpu_peak.py).")
flags.DEFINE_string("profile", "", "Also record a jax.profiler trace of --steps model-path "
                    "iterations per (batch, dtype) under this folder (view with xprof or "
                    "TensorBoard's profile plugin).")
flags.mark_flag_as_required("config")

PATHS = ("model", "device", "numpy", "tfdata")

@dataclasses.dataclass
class Row:
  batch: int
  dtype: str
  path: str
  scan: int
  img_per_s: float
  ms_per_step: float
  flops_per_image: float | None
  tflops_per_s: float | None
  mfu: float | None
  peak_basis: str
  compiled_memory_bytes: int | None
  peak_memory_bytes: int | None
  fraction_of_model: float | None = None  # img/s over the model row's


def scan_steps(step_fn: Callable, num_steps: int, stacked: bool = False) -> Callable:
  """step_fn(state, data, key) run `num_steps` times in one call (lax.scan).

  `stacked`: `data` holds `num_steps` batches one after another along its first
  axis, one per iteration; otherwise every iteration gets the same `data` (one
  reused batch, or the device-resident data set from which each step picks its
  own). Returns the final state and the last iteration's metrics.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jax import lax  # pylint: disable=import-outside-toplevel

  if num_steps == 1:
    return step_fn

  def multi(state, data, key):
    if stacked:
      batches = data.reshape(num_steps, data.shape[0] // num_steps, *data.shape[1:])
      state, metrics = lax.scan(lambda s, batch: step_fn(s, batch, key), state, batches)
    else:
      state, metrics = lax.scan(lambda s, _: step_fn(s, data, key), state, None,
                                length=num_steps)
    return state, jax.tree.map(lambda m: m[-1], metrics)

  return multi


def time_calls(call: Callable, state: Any, data: Callable[[], Any], key: Any, calls: int,
               warmup: int, repeats: int) -> tuple[float, Any]:
  """Seconds per call, the fastest of `repeats` windows; waits for the final state only."""
  import jax  # pylint: disable=import-outside-toplevel
  for _ in range(warmup):
    state, _ = call(state, data(), key)
  jax.block_until_ready(state)
  best = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      state, _ = call(state, data(), key)
    jax.block_until_ready(state)
    best = min(best, (time.perf_counter() - start) / calls)
  return best, state


def random_images(num: int, resolution: int, seed: int = 0):
  import numpy as np  # pylint: disable=import-outside-toplevel
  return np.random.default_rng(seed).integers(0, 256, (num, resolution, resolution, 3), np.uint8)


def bench_config(config, batch: int, dtype: str, paths, devices, images, steps: int,
                 warmup: int, repeats: int, scan: int, profile_dir: str = "",
                 peak_gflops: float | None = None) -> Iterator[Row]:
  """Rows for one (batch, dtype): compile, warm up and time each path."""
  from gan_jax import parallel  # pylint: disable=import-outside-toplevel
  from gan_jax.config import checks  # pylint: disable=import-outside-toplevel
  from gan_jax.training import family  # pylint: disable=import-outside-toplevel

  config = configured(config, batch, dtype)
  checks.validate_config(config)  # what the training start would refuse, refused here too
  label = dtype_label(config.train)  # the rows' dtype column
  gan = family.bundle(config)  # the GAN, or a family's own bundle (a VAE-GAN's)
  mesh = parallel.make_mesh(devices)
  parallel.check_batch_size(batch, len(devices))
  step_fn = family.make_train_step(gan)
  calls = max(1, math.ceil(steps / scan))
  peak, peak_basis = peak_for(devices, products_dtype(config.train), peak_gflops)
  fresh_state = functools.partial(_fresh_state, gan, config.seed)
  model_runner = parallel.DataParallel(scan_steps(step_fn, scan), config.parallel, mesh=mesh)
  batch_on_device = model_runner.put_batch(images[:batch])
  state, key = fresh_state(model_runner)
  model_call = model_runner.step.lower(state, batch_on_device, key).compile()
  flops = step_flops(config, step_fn, model_runner.get_state(state), model_call,
                     (batch // len(devices), *images.shape[1:]), images.dtype, scan)
  row = functools.partial(make_row, batch=batch, label=label, scan=scan, device=devices[0],
                          flops_per_image=flops * len(devices) / batch if flops else None,
                          peak=peak, peak_basis=peak_basis)
  model_row = None
  for path in paths:
    if path == "model":
      seconds, state = time_calls(model_call, state, lambda: batch_on_device, key, calls, warmup,
                                  repeats)
      model_row = row(path, seconds, model_call)
      if profile_dir:  # after timing, so the trace costs the figures nothing
        trace_dir = pathlib.Path(profile_dir, f"b{batch}_{label.replace('/', '_conv_')}_scan{scan}")
        state = trace_calls(model_call, state, batch_on_device, key, calls, trace_dir)
      yield model_row
      continue
    call, state, key, next_data = pipeline_call(path, step_fn, model_runner, model_call, images,
                                                config, mesh, batch, scan, fresh_state)
    seconds, state = time_calls(call, state, next_data, key, calls, warmup, repeats)
    result = row(path, seconds, call)
    if model_row is not None:
      result.fraction_of_model = result.img_per_s / model_row.img_per_s
    yield result
  del state


def configured(config, batch: int, dtype: str):
  """A resolved copy of `config` with train.batch_size and train.dtype (/conv_dtype) set."""
  config = config.copy_and_resolve_references()
  config.train.batch_size = batch
  config.train.dtype, _, conv_dtype = dtype.partition("/")
  if conv_dtype:
    config.train.conv_dtype = conv_dtype
  return config


def peak_for(devices, products: str, peak_gflops: float | None) -> tuple[float | None, str]:
  """The peak FLOP/s the MFU column divides by, all devices together, and what it rests on."""
  device = devices[0]
  peak, peak_basis = device_costs.peak_flops(device, products)
  if device.platform != "cpu":
    peak = peak * len(devices) if peak else None  # per GPU; a CPU's is the whole machine's
  if peak_gflops:
    peak, peak_basis = peak_gflops * 1e9, f"{peak_gflops:g} GFLOP/s given by hand"
  return peak, peak_basis


def _fresh_state(gan, seed: int, runner):  # each runner's step donates the state it is given
  from gan_jax import train  # pylint: disable=import-outside-toplevel
  return train.place_state(runner, train.initial_state(gan, seed))


def step_flops(config, step_fn: Callable, state, model_call, per_device_shape: tuple,
               images_dtype, scan: int) -> float | None:
  """One iteration's FLOPs on one device: of the plain maths (family.counted_config)."""
  from gan_jax.training import family  # pylint: disable=import-outside-toplevel
  counted = family.counted_config(config)
  counted_step = step_fn if counted is config else family.make_train_step(family.bundle(counted))
  flops = device_costs.model_flops(counted_step, state, per_device_shape, images_dtype)
  if flops is None and scan == 1:  # no CPU backend: the compiled step's own count
    flops = device_costs.cost_flops(model_call)
  return flops


def make_row(path: str, seconds_per_call: float, compiled, *, batch: int, label: str, scan: int,
             device, flops_per_image: float | None, peak: float | None, peak_basis: str) -> Row:
  """A row of the table from one path's seconds per call (`scan` iterations)."""
  seconds = seconds_per_call / scan
  achieved = flops_per_image * batch / seconds if flops_per_image else None
  return Row(batch=batch, dtype=label, path=path, scan=scan, img_per_s=batch / seconds,
             ms_per_step=1e3 * seconds, flops_per_image=flops_per_image,
             tflops_per_s=achieved / 1e12 if achieved else None,
             mfu=achieved / peak if achieved and peak else None,
             peak_basis=peak_basis, compiled_memory_bytes=device_costs.compiled_memory(compiled),
             peak_memory_bytes=device_costs.peak_memory(device))


def trace_calls(call, state, data, key, calls: int, trace_dir: pathlib.Path):
  """A jax.profiler trace of `calls` calls into trace_dir, beside the step's HLO text."""
  import jax  # pylint: disable=import-outside-toplevel
  trace_dir.mkdir(parents=True, exist_ok=True)
  # The thunks of a CPU trace are named after HLO instructions: their text lets
  # benchmarks/cpu_profile.py map them to layers and passes.
  (trace_dir / "step.hlo.txt").write_text(call.as_text())
  with jax.profiler.trace(str(trace_dir)):
    for _ in range(calls):
      state, _ = call(state, data, key)
    jax.block_until_ready(state)
  return state


def pipeline_call(path: str, step_fn, model_runner, model_call, images, config, mesh, batch: int,
                  scan: int, fresh_state):
  """(compiled call, fresh state, key, data source) of a device, numpy or tfdata row."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from gan_jax import parallel  # pylint: disable=import-outside-toplevel
  from gan_jax.data import pipeline as input_pipeline  # pylint: disable=import-outside-toplevel
  if path == "device":  # the data set on the device, each step gathering its own batch
    resident = input_pipeline.device_resident_step(step_fn, len(images), config.seed, batch)
    runner = parallel.DataParallel(scan_steps(resident, scan), config.parallel, mesh=mesh,
                                   replicated_data=True)
    data = runner.put_replicated(images)
    state, key = fresh_state(runner)
    return runner.step.lower(state, data, key).compile(), state, key, lambda: data
  # numpy / tfdata: the host gathers `scan` batches per call, put two calls ahead
  runner, call = model_runner, model_call  # one batch per call: the model row's program
  if scan > 1:
    runner = parallel.DataParallel(scan_steps(step_fn, scan, stacked=True), config.parallel,
                                   mesh=mesh)
  state, key = fresh_state(runner)
  batches = input_pipeline.host_batches(path, images, runner.put_batch, batch * scan, config.seed)
  if scan > 1:
    call = runner.step.lower(state, runner.put_batch(np.asarray(images[:batch * scan])),
                             key).compile()
  return call, state, key, lambda: next(batches)


def products_dtype(train) -> str:
  """The dtype of the convolutions' operands on this machine (train.conv_dtype resolved)."""
  from gan_jax.models import operand_dtype  # pylint: disable=import-outside-toplevel
  resolved = operand_dtype.resolve(train.conv_dtype)
  return resolved.name if resolved is not None else train.dtype


def dtype_label(train) -> str:
  """train.dtype, with /the products' dtype when the convolutions' operands differ."""
  products = products_dtype(train)
  return f"{train.dtype}/{products}" if products != train.dtype else train.dtype


def format_row(row: Row) -> str:
  def maybe(value, fmt, scale=1.0):
    return format(value * scale, fmt) if value is not None else "n/a"
  memory = row.peak_memory_bytes or row.compiled_memory_bytes
  return (f"{row.batch:>6} {row.dtype:>16} {row.path:>7} {row.scan:>4} {row.img_per_s:>10.1f} "
          f"{row.ms_per_step:>9.2f} {maybe(row.flops_per_image, '.3f', 1e-9):>9} "
          f"{maybe(row.tflops_per_s, '.3f'):>8} {maybe(row.mfu, '.1%'):>6} "
          f"{maybe(memory, '.0f', 2**-20):>8} {maybe(row.fraction_of_model, '.0%'):>8}")


HEADER = (f"{'batch':>6} {'dtype':>16} {'path':>7} {'scan':>4} {'img/s':>10} {'ms/step':>9} "
          f"{'GFLOP/img':>9} {'TFLOP/s':>8} {'MFU':>6} {'mem MiB':>8} {'vs model':>8}")


def run(config, batches, dtypes, paths, num_devices: int, steps: int, warmup: int,
        repeats: int, scan: int, num_images: int, json_path: str = "",
        profile_dir: str = "", peak_gflops: float | None = None) -> dict:
  """Time every (batch, dtype, path), print the table, and return (and write) the results."""
  import jax  # pylint: disable=import-outside-toplevel

  available = jax.devices()
  if num_devices < 0 or num_devices > len(available):
    raise ValueError(f"--devices={num_devices} but {len(available)} device(s) are available; "
                     f"use 1 to {len(available)} (0 = all)")
  devices = available[:num_devices or len(available)]
  resolution = config.data.resolution
  largest = max(batches) * scan
  if config.data.path:
    # The faces training reads: data.limit and data.holdout applied.
    images = data_loader.run_training_images(config.data)
    source = str(config.data.path)
  else:
    images, source = random_images(max(num_images, 2 * largest), resolution), "random uint8"
  if len(images) < largest:
    raise ValueError(f"the data set has {len(images)} images, fewer than one call's "
                     f"{largest} (batch x scan); lower --batch or --scan, or add images")
  device = devices[0]
  print(f"{device.platform}: {len(devices)} x {device.device_kind}; jax {jax.__version__}; "
        f"{len(images)} images of {resolution} px ({source}); {steps} steps x {repeats} "
        f"repeats, {warmup} warm-up, {scan} per call", flush=True)
  print(HEADER, flush=True)
  rows = []
  for batch in batches:
    for dtype in dtypes:
      for row in bench_config(config, batch, dtype, paths, devices, images, steps, warmup,
                              repeats, scan, profile_dir, peak_gflops):
        print(format_row(row), flush=True)
        rows.append(row)
  for basis in dict.fromkeys(row.peak_basis for row in rows):
    print(f"MFU: the share of the peak {basis}", flush=True)
  result = {
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "command": " ".join(["python -m gan_jax.bench", *sys.argv[1:]]),
      "platform": device.platform,
      "device_kind": device.device_kind,
      "num_devices": len(devices),
      "jax_version": jax.__version__,
      "data": source,
      "resolution": resolution,
      "deterministic": bool(config.train.deterministic),
      "steps": steps, "warmup": warmup, "repeats": repeats, "scan": scan,
      "rows": [dataclasses.asdict(row) for row in rows],
  }
  if json_path:
    with open(json_path, "w") as f:
      json.dump(result, f, indent=2)
  return result


# run's ValueErrors (--devices, too few --num_images) are the user's to fix too.
@cli.exit_on_user_error(ValueError)
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from gan_jax.config.checks import DTYPES  # pylint: disable=import-outside-toplevel
  config = FLAGS.config
  try:
    batches = [int(b) for b in FLAGS.batch] if FLAGS.batch else [config.train.batch_size]
  except ValueError:
    raise ConfigError(f"--batch={','.join(FLAGS.batch)} must be comma-separated integers, "
                      "e.g. 128,512") from None
  dtypes = FLAGS.dtype or [config.train.dtype]
  problems = ([f"--dtype {d!r} is not one of {', '.join(DTYPES)}, optionally /one of them for "
               "the convolutions (e.g. float32/bfloat16)" for d in dtypes
               if not all(part in DTYPES for part in d.split("/", 1))]
              + [f"--paths {p!r} is not one of {', '.join(PATHS)}" for p in FLAGS.paths
                 if p not in PATHS]
              + [f"--batch {b} must be >= 1" for b in batches if b < 1]
              + [f"--{name}={getattr(FLAGS, name)} must be >= 1"
                 for name in ("steps", "repeats", "scan") if getattr(FLAGS, name) < 1]
              + ([f"--warmup={FLAGS.warmup} must be >= 0"] if FLAGS.warmup < 0 else []))
  if problems:
    raise ConfigError("; ".join(problems))
  # As gan_jax.main does, before a JAX backend starts: training's XLA flags.
  from gan_jax import train  # pylint: disable=import-outside-toplevel
  train.use_deterministic_ops(config)
  paths = [path for path in PATHS if path in FLAGS.paths]  # model first: others compare to it
  run(config, batches, dtypes, paths, FLAGS.devices, FLAGS.steps, FLAGS.warmup,
      FLAGS.repeats, FLAGS.scan, FLAGS.num_images, FLAGS.json, FLAGS.profile, FLAGS.peak_gflops)


if __name__ == "__main__":
  from gan_jax.config.options import parse_flags  # pylint: disable=import-outside-toplevel
  cli.run_absl(main, flags_parser=parse_flags)
