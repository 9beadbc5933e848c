"""Start JAX's multi-process runtime, once, before anything touches a device.

One process runs per host and drives all of that host's devices; the processes
find each other through a coordinator (process 0's host:port). Where the
settings come from, first match wins:

1. flags: --coordinator_address, --num_processes, --process_id;
2. environment: GAN_JAX_COORDINATOR, GAN_JAX_NUM_PROCESSES, GAN_JAX_PROCESS_ID
   (launch/slurm.sbatch sets these);
3. a SLURM job step with several tasks (srun): JAX reads SLURM's variables
   itself. JAX then gives each process one GPU (SLURM_LOCALID), i.e. expects
   one task per GPU, unless JAX_LOCAL_DEVICE_IDS says otherwise;
4. none of these: a single process, and nothing is initialised.

With 1 or 2, all three values must be given, and the process sees all of its
host's devices (JAX's cluster detection is switched off).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import jax
import numpy as np
from gan_jax.errors import DistributedError

COORDINATOR_ENV = "GAN_JAX_COORDINATOR"
NUM_PROCESSES_ENV = "GAN_JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "GAN_JAX_PROCESS_ID"
# What JAX's SLURM detection reads (jax/_src/clusters/slurm_cluster.py); srun sets them all.
SLURM_STEP_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                        "SLURM_LOCALID")
# A coordinator at one of these listens on loopback only.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")



@dataclasses.dataclass(frozen=True)
class Settings:
  """How this process joins the run. `source` says where the values came from."""
  source: str  # "flags" | "environment" | "slurm" | "single"
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None

  @property
  def is_multi_process(self) -> bool:
    return self.source != "single"


def _as_int(value, name: str) -> int | None:
  if value is None or value == "":
    return None
  try:
    return int(value)
  except (TypeError, ValueError):
    raise DistributedError(f"{name}={value!r} is not an integer") from None


def _explicit(source: str, names: tuple[str, str, str], address, num_processes, process_id
              ) -> Settings | None:
  """Settings from three values of which none or all are given."""
  num_processes = _as_int(num_processes, names[1])
  process_id = _as_int(process_id, names[2])
  values = {names[0]: address or None, names[1]: num_processes, names[2]: process_id}
  given = [name for name, value in values.items() if value is not None]
  if not given:
    return None
  missing = [name for name, value in values.items() if value is None]
  if missing:
    raise DistributedError(f"{', '.join(given)} given without {', '.join(missing)}: a "
                           f"multi-process run needs all of {', '.join(names)} (or none, for "
                           "one process)")
  if num_processes < 1:
    raise DistributedError(f"{names[1]}={num_processes} must be at least 1")
  if not 0 <= process_id < num_processes:
    raise DistributedError(f"{names[2]}={process_id} must be in [0, {num_processes - 1}] for "
                           f"{names[1]}={num_processes}")
  if ":" not in address:
    raise DistributedError(f"{names[0]}={address!r} must be HOST:PORT of process 0, "
                           "e.g. 10.0.0.1:12345")
  return Settings(source, address, num_processes, process_id)


def resolve(coordinator_address: str | None = None, num_processes: int | None = None,
            process_id: int | None = None, environ: Mapping[str, str] | None = None) -> Settings:
  """Where this process's multi-process settings come from (see the module docstring)."""
  environ = os.environ if environ is None else environ
  from_flags = _explicit("flags", ("--coordinator_address", "--num_processes", "--process_id"),
                         coordinator_address, num_processes, process_id)
  if from_flags is not None:
    return from_flags
  from_env = _explicit("environment", (COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV),
                       environ.get(COORDINATOR_ENV), environ.get(NUM_PROCESSES_ENV),
                       environ.get(PROCESS_ID_ENV))
  if from_env is not None:
    return from_env
  if all(name in environ for name in SLURM_STEP_VARIABLES):
    tasks = _as_int(environ["SLURM_NTASKS"], "SLURM_NTASKS")
    if tasks > 1:
      return Settings("slurm", num_processes=tasks,
                      process_id=_as_int(environ["SLURM_PROCID"], "SLURM_PROCID"))
  return Settings("single")


def _loopback_bind(address: str) -> str | None:
  """A loopback coordinator listens on loopback only (JAX's default is every interface)."""
  host = address.rsplit(":", 1)[0].strip("[]")
  return address if host in LOOPBACK_HOSTS else None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300) -> Settings:
  """Join the multi-process run the flags or environment describe; a no-op for one process.

  Call before anything that starts a JAX backend (jax.devices(), any array).
  """
  settings = resolve(coordinator_address, num_processes, process_id)
  if not settings.is_multi_process or jax.distributed.is_initialized():
    return settings
  try:
    if settings.source == "slurm":
      # JAX finds the coordinator (first node of the step), count and id itself.
      jax.distributed.initialize(initialization_timeout=timeout_s)
    else:
      # 'deactivate': with the values given, JAX must not also apply a cluster's
      # defaults, which would give each process one GPU under SLURM.
      address = settings.coordinator_address
      jax.distributed.initialize(address, settings.num_processes, settings.process_id,
                                 cluster_detection_method="deactivate",
                                 initialization_timeout=timeout_s,
                                 coordinator_bind_address=_loopback_bind(address))
  except jax.errors.JaxRuntimeError as error:  # e.g. no coordinator within the timeout
    where = settings.coordinator_address or "the first node of the SLURM step"
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    raise DistributedError(
        f"process {settings.process_id} of {settings.num_processes} could not join the run at "
        f"{where} within {timeout_s} s ({first_line}); start every process, and check that "
        "the address is process 0's host and the port is free and reachable") from error
  return settings


def any_process(flag: bool) -> bool:
  """Whether `flag` is set in any process; every process must call this at the same point."""
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag, np.int32))))


def describe() -> str:
  """'process 1 of 2, 2 local / 4 devices (cpu)': for the log."""
  return (f"process {jax.process_index()} of {jax.process_count()}, {jax.local_device_count()} "
          f"local / {jax.device_count()} devices ({jax.devices()[0].platform})")
