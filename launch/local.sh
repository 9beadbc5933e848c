#!/usr/bin/env bash
# Train on every device of this host, in one process (data parallel over all GPUs):
#
#   bash launch/local.sh CONFIG WORKDIR [more gan_jax.main flags]
#   bash launch/local.sh configs/celeba64.py runs/celeba64 --config.data.path=data/celeba
#
# The global batch (--config.train.batch_size) is split over the devices, so it
# must be a multiple of their number. Paths are relative to where you run it.
#
# Variables it reads (all optional):
#   PYTHON                 the Python that has gan_jax installed (default: python)
#   CUDA_VISIBLE_DEVICES   which GPUs to use (default: all of them)
#   GAN_JAX_CPU_DEVICES    on a host without GPUs, split the CPU into this many devices
#                          (default 1), to try the multi-device path; GPUs ignore it
#   XLA_FLAGS              passed on to XLA (GAN_JAX_CPU_DEVICES adds its flag to it)
set -euo pipefail

usage="usage: bash launch/local.sh CONFIG WORKDIR [more gan_jax.main flags]"
if [[ $# -lt 2 || "$1" == -* || "$2" == -* ]]; then
  echo "$usage" >&2
  exit 2
fi
config=$1
workdir=$2
shift 2
if [[ ! -f "$config" ]]; then
  echo "error: config file $config not found (give a path such as configs/tiny.py)" >&2
  exit 2
fi

cpu_devices=${GAN_JAX_CPU_DEVICES:-1}
if ! [[ "$cpu_devices" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: GAN_JAX_CPU_DEVICES=$cpu_devices must be a positive integer" >&2
  exit 2
fi
if (( cpu_devices > 1 )); then
  # Fake CPU devices are threads: on a busy machine one can be late to a collective by more
  # than XLA's 40 s, which aborts the run. Wait 5 minutes before giving up.
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$cpu_devices \
--xla_cpu_collective_call_terminate_timeout_seconds=300"
fi

python=${PYTHON:-python}
# exec: signals (Ctrl-C, a scheduler's SIGTERM) reach the trainer, which saves a checkpoint.
exec "$python" -m gan_jax.main --config "$config" --workdir "$workdir" "$@"
