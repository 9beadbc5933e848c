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

from gan_jax.errors import ConfigError

PARALLEL_MODES = ("shard_map", "pmap")
# The mapped axis of the data-parallel step: gradients, metrics and batch-norm
# statistics are averaged over it (lax.pmean(..., BATCH_AXIS)).
BATCH_AXIS = "batch"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named 'batch' over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (BATCH_AXIS,))


def check_batch_size(global_batch: int, num_devices: int) -> None:
  """Fail before compiling when the batch cannot be split evenly (ConfigError)."""
  if global_batch % num_devices:
    fits = global_batch - global_batch % num_devices or num_devices
    raise ConfigError(f"train.batch_size={global_batch} is not divisible by the {num_devices} "
                      f"devices; use a multiple of {num_devices} "
                      f"(e.g. --config.train.batch_size={fits})")


def replicate(tree: Any, sharding: NamedSharding, copy: bool = False) -> Any:
  """`jax.device_put(tree, sharding)` for a replicated sharding, also across processes.

  device_put cannot reach other processes' devices, so there every process
  puts its own (identical) copy on its devices and the copies form one array.
  With `copy`, arrays that already live there are copied too, never aliased.
  """
  if sharding.is_fully_addressable:
    return jax.device_put(tree, sharding, may_alias=False if copy else None)

  def put(x):
    if isinstance(x, jax.Array) and x.sharding == sharding:
      return x
    devices = sharding.addressable_devices_indices_map(np.shape(x))
    copies = [jax.device_put(x, device) for device in devices]
    return jax.make_array_from_single_device_arrays(np.shape(x), sharding, copies)

  return jax.tree.map(put, tree)


def _local_copy(x: Any) -> Any:
  """This process's copy of an array replicated over several processes (pmap takes local ones)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return x.addressable_data(0)
  return x


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
      raise ConfigError(f"unknown parallel mode {mode!r}; use one of {', '.join(PARALLEL_MODES)} "
                        "(--config.parallel)")
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
      # This process's devices: pmap takes arrays with one slice per local device,
      # and (devices=None) maps over those of every process, as one axis.
      self.devices = jax.local_devices() if mesh is None else list(mesh.devices.flat)
      self._stacked = NamedSharding(Mesh(np.asarray(self.devices), (BATCH_AXIS,)), P(BATCH_AXIS))
      self._replicated = NamedSharding(
          make_mesh() if mesh is None else Mesh(np.asarray(self.devices), (BATCH_AXIS,)), P())
      self.step = jax.pmap(step_fn, axis_name=BATCH_AXIS, in_axes=(0, 0, None),
                           devices=None if mesh is None else self.devices, donate_argnums=(0,))

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  @property
  def state_sharding(self) -> NamedSharding:
    """Where `get_state` puts a state: replicated on every device of every process."""
    return self._replicated

  def put_state(self, state: Any) -> Any:
    """Replicate a host/single-device state (or one from `get_state`) onto every device."""
    if self.mode == "shard_map":
      # A copy: the step donates the state's buffers, and a restored state's may still be
      # shared with the arrays they were restored from (suspected, not shown, in a rare
      # XLA abort of a resumed run in the tests, 2026-12-07).
      return replicate(state, self._replicated, copy=True)
    n = len(self.devices)
    stacked = jax.tree.map(lambda x: jax.numpy.broadcast_to(_local_copy(x), (n, *x.shape)), state)
    return jax.device_put(stacked, self._stacked)

  def put_key(self, key: jax.Array) -> jax.Array:
    """The step's key argument: replicated (shard_map), or one copy pmap broadcasts."""
    return replicate(key, self._replicated) if self.mode == "shard_map" else _local_copy(key)

  def put_replicated(self, array: np.ndarray) -> jax.Array:
    """One copy of a (large) host array on every device, for `replicated_data=True`."""
    if self.mode == "shard_map":
      return replicate(array, self._replicated)
    # Copied device by device: stacking it on the host first would need n copies in memory.
    copies = [jax.device_put(array[None], device) for device in self.devices]
    return jax.make_array_from_single_device_arrays((len(copies), *array.shape), self._stacked,
                                                    copies)

  def get_state(self, state: Any) -> Any:
    """One copy of a replicated state, usable outside the mapped step.

    Under pmap the per-device copies become one array replicated on
    `state_sharding`, as under shard_map, so that jit and Orbax (which needs
    every process to hold the same global array) treat both modes alike.
    """
    if self.mode == "shard_map":
      return state

    def first_copy(x):
      copies = [shard.data[0] for shard in x.addressable_shards]
      return jax.make_array_from_single_device_arrays(x.shape[1:], self._replicated, copies)

    return jax.tree.map(first_copy, state)

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
