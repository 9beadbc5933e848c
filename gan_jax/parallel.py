"""Data-parallel execution of the per-device train step.

The same per-device function runs either under `jax.jit(jax.shard_map(...))`
over a 1-D mesh named 'batch' (the default) or under `jax.pmap`. Both keep the
state replicated and split the batch along its first axis.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gan_jax.models.dcgan import BATCH_AXIS

PARALLEL_MODES = ("shard_map", "pmap")


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named 'batch' over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (BATCH_AXIS,))


def check_batch_size(global_batch: int, num_devices: int) -> None:
  """Fail before compiling when the batch cannot be split evenly."""
  if global_batch % num_devices:
    fits = global_batch - global_batch % num_devices or num_devices
    raise ValueError(f"train.batch_size={global_batch} is not divisible by the {num_devices} "
                     f"devices; use a multiple of {num_devices} (e.g. --config.train.batch_size={fits})")


class DataParallel:
  """Places state and batches on the devices and runs the mapped step.

  `mode='shard_map'`: state is a replicated global array, the batch is sharded.
  `mode='pmap'`: state and batch carry a leading device axis (local devices).
  """

  def __init__(self, step_fn: Callable, mode: str = "shard_map", mesh: Mesh | None = None,
               replicated_data: bool = False):
    """`replicated_data`: the step's second argument is the same on every device
    (the whole data set, put there once with `put_replicated`), not a split batch."""
    if mode not in PARALLEL_MODES:
      raise ValueError(f"unknown parallel mode {mode!r}; use one of {', '.join(PARALLEL_MODES)}")
    self.mode = mode
    if mode == "shard_map":
      self.mesh = mesh if mesh is not None else make_mesh()
      self.devices = list(self.mesh.devices.flat)
      self._replicated = NamedSharding(self.mesh, P())
      self._sharded = NamedSharding(self.mesh, P(BATCH_AXIS))
      data_spec = P() if replicated_data else P(BATCH_AXIS)
      mapped = jax.shard_map(step_fn, mesh=self.mesh, in_specs=(P(), data_spec, P()),
                             out_specs=(P(), P()),
                             # Gradients are averaged explicitly with pmean, as under
                             # pmap; automatic cross-device typing would sum them twice.
                             check_vma=False)
      self.step = jax.jit(mapped, donate_argnums=(0,))
    else:
      self.mesh = None
      self.devices = jax.local_devices() if mesh is None else list(mesh.devices.flat)
      # pmap takes arrays whose leading axis is split one slice per device.
      self._stacked = NamedSharding(Mesh(np.asarray(self.devices), (BATCH_AXIS,)), P(BATCH_AXIS))
      self.step = jax.pmap(step_fn, axis_name=BATCH_AXIS, in_axes=(0, 0, None),
                           devices=self.devices, donate_argnums=(0,))

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def put_state(self, state: Any) -> Any:
    """Replicate a host/single-device state onto every device."""
    if self.mode == "shard_map":
      return jax.device_put(state, self._replicated)
    n = len(self.devices)
    stacked = jax.tree.map(lambda x: jax.numpy.broadcast_to(x, (n, *x.shape)), state)
    return jax.device_put(stacked, self._stacked)

  def put_replicated(self, array: np.ndarray) -> jax.Array:
    """One copy of a (large) host array on every device, for `replicated_data=True`."""
    if self.mode == "shard_map":
      return jax.device_put(array, self._replicated)
    # Copied device by device: stacking it on the host first would need n copies in memory.
    copies = [jax.device_put(array[None], device) for device in self.devices]
    return jax.make_array_from_single_device_arrays((len(copies), *array.shape), self._stacked,
                                                    copies)

  def get_state(self, state: Any) -> Any:
    """One copy of a replicated state, usable outside the mapped step."""
    if self.mode == "shard_map":
      return state
    return jax.tree.map(lambda x: x[0], state)

  def put_batch(self, batch: np.ndarray) -> jax.Array:
    """Split this process's share of the global batch over the devices."""
    if self.mode == "shard_map":
      return jax.make_array_from_process_local_data(self._sharded, batch)
    n = len(self.devices)
    if len(batch) % n:
      check_batch_size(len(batch), n)
    return jax.device_put(batch.reshape(n, -1, *batch.shape[1:]), self._stacked)

  def get_metrics(self, metrics: Any) -> dict[str, float]:
    """Metrics as host floats (this waits for the step to finish)."""
    metrics = jax.device_get(metrics if self.mode == "shard_map" else
                             jax.tree.map(lambda x: x[0], metrics))
    return {name: float(value) for name, value in metrics.items()}
