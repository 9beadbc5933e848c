"""Where a run's scalars and images go: TensorBoard event files and WORKDIR/metrics.jsonl.

TensorBoard gets event files written with the `tensorboard` package's records
and protos into a plain file: no TensorFlow is imported (clu's writer and
tensorboard's own EventFileWriter, through tf.io.gfile, import it where it is
installed; tensorboardX imports PyTorch where that is), so a run on the device
or numpy input path never loads TensorFlow. Scalars also go to
WORKDIR/metrics.jsonl, one JSON object per line with the step and its epoch,
which `python -m gan_jax.plots WORKDIR` turns into curves. This module imports
no JAX, so the plots can read its file names cheaply.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import pathlib
import socket
import time
from typing import Mapping

import numpy as np
from absl import logging

from gan_jax import images as image_lib

METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"  # the sample grids, WORKDIR/samples/step_NNNNNNN.png
_event_files = itertools.count()  # two writers of one process in one second: two files


class TensorBoardWriter:
  """TensorBoard event files written by the `tensorboard` package, without TensorFlow.

  Writes the summaries TensorFlow's writer would (scalar and image plugin
  tensors), so TensorBoard and readers see the format of TF2 summaries.
  """

  def __init__(self, logdir: str | pathlib.Path):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.image import metadata as image_metadata
    from tensorboard.plugins.scalar import metadata as scalar_metadata
    from tensorboard.summary.writer.record_writer import RecordWriter
    from tensorboard.util import tensor_util
    self._event_pb2, self._summary_pb2, self._tensor_util = event_pb2, summary_pb2, tensor_util
    self._image_metadata, self._scalar_metadata = image_metadata, scalar_metadata
    logdir = pathlib.Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    # The name TensorBoard looks for: events.out.tfevents.<time>.<host>.<pid>.<n>.
    name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(_event_files)}")
    self._records = RecordWriter(open(logdir / name, "wb"))  # pylint: disable=consider-using-with
    self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _add(self, event) -> None:
    self._records.write(event.SerializeToString())

  def _write(self, step: int, values: list) -> None:
    summary = self._summary_pb2.Summary(value=values)
    self._add(self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self._write(step, [
        self._summary_pb2.Summary.Value(
            tag=tag, tensor=self._tensor_util.make_tensor_proto(np.float32(value)),
            metadata=self._scalar_metadata.create_summary_metadata(tag, ""))
        for tag, value in scalars.items()])

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    from PIL import Image
    values = []
    for tag, image in images.items():
      image = image_lib.to_uint8(image)
      batch = image[None] if image.ndim == 3 else image
      height, width = batch.shape[1:3]
      encoded = []
      for picture in batch:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
      # The image plugin's tensor: [width, height, png, png, ...] as strings.
      tensor = np.array([str(width).encode(), str(height).encode(), *encoded], dtype=object)
      values.append(self._summary_pb2.Summary.Value(
          tag=tag, tensor=self._tensor_util.make_tensor_proto(tensor),
          metadata=self._image_metadata.create_summary_metadata(tag, "")))
    self._write(step, values)

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    self._records.close()


def create_summary_writer(logdir: str | pathlib.Path) -> TensorBoardWriter | None:
  """`TensorBoardWriter`, or None (with a warning) when the tensorboard package is missing."""
  try:
    return TensorBoardWriter(logdir)
  except ImportError:
    logging.warning("tensorboard is not installed: metrics are written to %s only", METRICS_FILE)
    return None


class RunWriter:
  """Scalars to TensorBoard and metrics.jsonl, images to TensorBoard, for one run.

  `active=False` (every process but the first) makes every call do nothing.
  """

  def __init__(self, workdir: str | pathlib.Path, steps_per_epoch: int, active: bool = True):
    self.workdir, self.steps_per_epoch, self.active = pathlib.Path(workdir), steps_per_epoch, active
    # TensorBoard's writer (None when inactive or when no TensorBoard package is installed).
    self.summary = create_summary_writer(self.workdir) if active else None
    if active:
      self.workdir.mkdir(parents=True, exist_ok=True)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.active:
      return
    if self.summary is not None:
      self.summary.write_scalars(step, scalars)
      self.summary.flush()
    record = {"step": step, "epoch": round(step / self.steps_per_epoch, 4), **scalars}
    with open(self.workdir / METRICS_FILE, "a") as f:
      f.write(json.dumps(record) + "\n")

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    if self.summary is not None:
      self.summary.write_images(step, images)

  def close(self) -> None:
    if self.summary is not None:
      self.summary.close()
