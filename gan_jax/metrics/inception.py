"""The FID Inception-v3 (TF "2015-12-05" graph, pool3 features) in Flax.

A re-implementation of the network every FID number is computed with, laid
out as the reference TorchScript archive so its weights load by name (see
`weights.py`), plus the reference input pipeline: legacy-TF bilinear resize
to 299x299 and scaling to [-1, 0.9921875]. Images are NHWC throughout.

  features = extract_features(uint8_images)  # (N, 2048) float32 numpy

Its speed on this machine's default device (docs/benchmarks.md):

  python -m gan_jax.metrics.inception --images 4000 --batch 250 --size 299 [--random_weights]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import sys
import time
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import cli
from gan_jax.errors import UserError
from gan_jax.metrics import weights
from gan_jax.monitor import progress

INPUT_SIZE = 299
FEATURE_DIM = 2048
# Full float32 convolutions: with the default precision an H100 moved features by 1.2e-2.
PRECISION = jax.lax.Precision.HIGHEST


class ConvBN(nn.Module):
  """Conv without bias, frozen batch norm with beta only (eps 1e-3), ReLU."""
  features: int
  kernel_size: tuple[int, int]
  strides: int = 1
  padding: str = "SAME"

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel_size, strides=self.strides, padding=self.padding,
                use_bias=False, precision=PRECISION, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, use_scale=False, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def avg_pool_3x3(x):
  # Padding is not counted in the average, as in the TF graph.
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)


def max_pool_3x3(x, strides=2):
  padding = "VALID" if strides == 2 else "SAME"
  return nn.max_pool(x, (3, 3), strides=(strides, strides), padding=padding)


class Tower(nn.Module):
  """ConvBN layers in sequence, named conv, conv_1, ... as in the archive.

  Each layer is (features, kernel_size) or (features, kernel_size, strides, padding).
  """
  layers: Sequence[tuple]
  avg_pool_first: bool = False

  @nn.compact
  def __call__(self, x):
    if self.avg_pool_first:
      x = avg_pool_3x3(x)
    for index, layer in enumerate(self.layers):
      x = ConvBN(*layer, name="conv" if index == 0 else f"conv_{index}")(x)
    return x


class InceptionA(nn.Module):
  """35x35 block (mixed, mixed_1, mixed_2)."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        ConvBN(64, (1, 1), name="conv")(x),
        Tower([(48, (1, 1)), (64, (5, 5))], name="tower")(x),
        Tower([(64, (1, 1)), (96, (3, 3)), (96, (3, 3))], name="tower_1")(x),
        Tower([(self.pool_features, (1, 1))], avg_pool_first=True, name="tower_2")(x),
    ], axis=-1)


class InceptionB(nn.Module):
  """35x35 -> 17x17 reduction (mixed_3)."""

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        ConvBN(384, (3, 3), strides=2, padding="VALID", name="conv")(x),
        Tower([(64, (1, 1)), (96, (3, 3)), (96, (3, 3), 2, "VALID")], name="tower")(x),
        max_pool_3x3(x),
    ], axis=-1)


class InceptionC(nn.Module):
  """17x17 block with factorised 7x7 convolutions (mixed_4 .. mixed_7)."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c = self.channels_7x7
    return jnp.concatenate([
        ConvBN(192, (1, 1), name="conv")(x),
        Tower([(c, (1, 1)), (c, (1, 7)), (192, (7, 1))], name="tower")(x),
        Tower([(c, (1, 1)), (c, (7, 1)), (c, (1, 7)), (c, (7, 1)), (192, (1, 7))],
              name="tower_1")(x),
        Tower([(192, (1, 1))], avg_pool_first=True, name="tower_2")(x),
    ], axis=-1)


class InceptionD(nn.Module):
  """17x17 -> 8x8 reduction (mixed_8)."""

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        Tower([(192, (1, 1)), (320, (3, 3), 2, "VALID")], name="tower")(x),
        Tower([(192, (1, 1)), (192, (1, 7)), (192, (7, 1)), (192, (3, 3), 2, "VALID")],
              name="tower_1")(x),
        max_pool_3x3(x),
    ], axis=-1)


class InceptionE(nn.Module):
  """8x8 block with split 1x3/3x1 branches (mixed_9 average-pools, mixed_10 max-pools)."""
  max_pool: bool

  @nn.compact
  def __call__(self, x):
    a = ConvBN(384, (1, 1), name="tower_conv")(x)
    b = ConvBN(448, (1, 1), name="tower_1_conv")(x)
    b = ConvBN(384, (3, 3), name="tower_1_conv_1")(b)
    pooled = max_pool_3x3(x, strides=1) if self.max_pool else avg_pool_3x3(x)
    return jnp.concatenate([
        ConvBN(320, (1, 1), name="conv")(x),
        ConvBN(384, (1, 3), name="tower_mixed_conv")(a),
        ConvBN(384, (3, 1), name="tower_mixed_conv_1")(a),
        ConvBN(384, (1, 3), name="tower_1_mixed_conv")(b),
        ConvBN(384, (3, 1), name="tower_1_mixed_conv_1")(b),
        ConvBN(192, (1, 1), name="tower_2_conv")(pooled),
    ], axis=-1)


class InceptionV3(nn.Module):
  """(N, 299, 299, 3) inputs in [-1, 1) -> (N, 2048) pool3 features."""

  @nn.compact
  def __call__(self, x):
    if x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
      raise ValueError(f"expected (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) inputs, got {x.shape}; "
                       "use preprocess() to resize")
    x = ConvBN(32, (3, 3), strides=2, padding="VALID", name="conv")(x)
    x = ConvBN(32, (3, 3), padding="VALID", name="conv_1")(x)
    x = ConvBN(64, (3, 3), name="conv_2")(x)
    x = max_pool_3x3(x)
    x = ConvBN(80, (1, 1), name="conv_3")(x)
    x = ConvBN(192, (3, 3), padding="VALID", name="conv_4")(x)
    x = max_pool_3x3(x)
    for index, pool_features in enumerate((32, 64, 64)):
      x = InceptionA(pool_features, name="mixed" if index == 0 else f"mixed_{index}")(x)
    x = InceptionB(name="mixed_3")(x)
    for index, channels in enumerate((128, 160, 160, 192), start=4):
      x = InceptionC(channels, name=f"mixed_{index}")(x)
    x = InceptionD(name="mixed_8")(x)
    x = InceptionE(max_pool=False, name="mixed_9")(x)
    x = InceptionE(max_pool=True, name="mixed_10")(x)
    # pool2: the 8x8 average pool covers the whole 8x8 map.
    return jnp.mean(x, axis=(1, 2))


def _resize_axis(x, axis: int, out_size: int):
  """Legacy-TF bilinear along one axis: output i samples input i * in / out."""
  in_size = x.shape[axis]
  # Static shapes, so the sample positions are computed once in float64.
  source = np.arange(out_size, dtype=np.float64) * (in_size / out_size)
  lower = np.minimum(np.floor(source).astype(np.int32), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  weight_shape = [1] * x.ndim
  weight_shape[axis] = out_size
  weight = jnp.asarray((source - lower).astype(np.float32).reshape(weight_shape))
  x_lower = jnp.take(x, lower, axis=axis)
  x_upper = jnp.take(x, upper, axis=axis)
  return x_lower + (x_upper - x_lower) * weight


def resize_to_299(images):
  """Bilinear resize of (N, H, W, C) to 299x299 as legacy TF / NVIDIA's FID detector.

  No half-pixel centres, indices clamped at the border, no antialiasing (this
  is not `jax.image.resize`). Returns float32 on the input's value scale.
  """
  images = jnp.asarray(images, jnp.float32)
  images = _resize_axis(images, 2, INPUT_SIZE)  # Width first, as TF's kernel.
  return _resize_axis(images, 1, INPUT_SIZE)


def preprocess(images):
  """uint8 (N, H, W, 3) -> float32 (N, 299, 299, 3) network input in [-1, 0.9921875].

  The reference's steps: scale to [0, 1]; only for other sizes round to
  0..255 and resize in float; map to [-1, 0.9921875].
  """
  x = jnp.clip(jnp.asarray(images, jnp.float32) / 255.0, 0.0, 1.0)
  if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
    x = resize_to_299(jnp.round(x * 255.0)) / 255.0
  return jnp.clip(x * 1.9921875 - 1.0, -1.0, 0.9921875)


class InceptionFeatures:
  """Batched, jitted pool3 feature extractor holding the weights on device."""

  def __init__(self, variables: dict | None = None):
    variables = weights.load_inception_params() if variables is None else variables
    self.variables = jax.device_put(variables)
    model = InceptionV3()
    # Two jits: the network compiles once per batch size, whatever the image size.
    self._preprocess = jax.jit(preprocess)
    self._network = jax.jit(model.apply)

  def __call__(self, images: np.ndarray, batch_size: int = 50) -> np.ndarray:
    """(N, H, W, 3) uint8 images -> (N, 2048) float32 numpy features."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}")
    outputs, pending = [], None
    with progress.bar(len(images), "Inception features") as bar:  # drawn on a terminal only
      for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size])
        count = len(batch)
        if count < batch_size:  # Pad so every batch reuses the compiled shape.
          batch = np.concatenate([batch,
                                  np.zeros((batch_size - count,) + batch.shape[1:], np.uint8)])
        features = self._network(self.variables, self._preprocess(batch))[:count]
        # The previous batch's features are fetched once this one is queued: the device
        # stays busy, and the bar counts finished batches.
        if pending is not None:
          outputs.append(np.asarray(pending))
          bar.update(len(pending))
        pending = features
      if pending is not None:
        outputs.append(np.asarray(pending))
        bar.update(len(pending))
    if not outputs:
      return np.zeros((0, FEATURE_DIM), np.float32)
    return np.concatenate(outputs).astype(np.float32)


@functools.lru_cache(maxsize=1)
def default_extractor() -> InceptionFeatures:
  """One shared extractor, so the weights load and compile once per process."""
  return InceptionFeatures()


def extract_features(images: np.ndarray, batch_size: int = 50) -> np.ndarray:
  """Pool3 features (N, 2048) float32 of uint8 (N, H, W, 3) images."""
  return default_extractor()(images, batch_size=batch_size)


def measure_speed(num_images: int, batch_size: int, size: int, repeats: int = 2,
                  random_weights: bool = False, seed: int = 0) -> dict:
  """Images/s of `extract_features` on random uint8 images of `size` px, best of `repeats`.

  Each window runs the whole extraction, host-to-device copies of the uint8
  batches and the features' copy back included (as FID computation does), after
  one warm-up batch that compiles. Random weights time the same as real ones.
  """
  if num_images < batch_size or batch_size < 1 or repeats < 1:
    raise UserError(f"need --images ({num_images}) >= --batch ({batch_size}) >= 1 and "
                    f"--repeats ({repeats}) >= 1")
  variables = None
  if random_weights:
    # The weights' shapes without running init; positive values keep batch-norm variances valid.
    shapes = jax.eval_shape(InceptionV3().init, jax.random.key(seed),
                            jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
    rng = np.random.default_rng(seed)
    variables = jax.tree.map(lambda s: rng.uniform(0.0, 0.05, s.shape).astype(s.dtype), shapes)
  extractor = InceptionFeatures(variables)
  images = np.random.RandomState(seed).randint(0, 256, (num_images, size, size, 3), np.uint8)
  extractor(images[:batch_size], batch_size)
  windows = []
  for _ in range(repeats):
    start = time.perf_counter()
    extractor(images, batch_size)  # returns numpy: the device work is finished
    windows.append(time.perf_counter() - start)
  device = jax.devices()[0]
  return {"images_per_s": num_images / min(windows), "seconds": windows,
          "num_images": num_images, "batch_size": batch_size, "size": size,
          "random_weights": random_weights, "precision": str(PRECISION),
          "device": f"{device.platform}: {device.device_kind}", "jax_version": jax.__version__,
          "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m gan_jax.metrics.inception",
      description="Time FID feature extraction (Inception pool3) on the default JAX device.")
  parser.add_argument("--images", type=int, default=4000, help="images per timed window")
  parser.add_argument("--batch", type=int, default=250, help="images per network call")
  parser.add_argument("--size", type=int, default=INPUT_SIZE,
                      help="input side in px (not 299: the resize is timed too)")
  parser.add_argument("--repeats", type=int, default=2, help="timed windows; the best is kept")
  parser.add_argument("--random_weights", action="store_true",
                      help="random weights instead of the fetched FID weights (same speed)")
  parser.add_argument("--json", default="", help="also write the result here")
  return parser


def run(args: argparse.Namespace) -> None:
  result = measure_speed(args.images, args.batch, args.size, args.repeats, args.random_weights)
  print(f"{result['device']}, jax {result['jax_version']}: {result['images_per_s']:.0f} images/s "
        f"({result['num_images']} images of {args.size} px, batch {args.batch}; windows "
        f"{', '.join(f'{s:.2f}' for s in result['seconds'])} s)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)


def main(argv: list[str] | None = None) -> int:
  return cli.run_cli(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
