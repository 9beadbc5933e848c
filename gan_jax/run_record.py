"""WORKDIR/run.json: what each start of a training run ran, and on what.

A seeded run reproduces bit for bit on the same software and hardware
(docs/reproducibility.md); this file says which those were. Every start of a
run (the first and each resume) appends one record to its "starts" list, the
latest last: the command line, the resolved config, the versions of Python and
the numerical packages (TensorFlow only when it was already imported: the
record imports nothing), the devices, the processes, the host, the start time
and the git commit of the checkout the code ran from (with whether its tree
had changes, and a digest of them). `python -m gan_jax.checkpoint fingerprint
WORKDIR` prints the record of the start that wrote the checkpoint beside its
hash, and the lines where it differs from earlier starts and from the
environment that runs that command (`differences`).

Process 0 writes the file for all processes.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import shlex
import shutil
import socket
import subprocess
import sys
from typing import Any, Mapping

import jax
import ml_collections

RUN_RECORD = "run.json"
# The distributions whose versions decide the numbers (PyPI names).
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
# JAX's accelerator plugins, recorded when installed.
PLUGINS = ("jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt",
           "libtpu")
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu")
CHECKOUT = pathlib.Path(__file__).resolve().parents[1]  # the repository root, in a checkout
UNTRACKED_BYTES = 2**20  # untracked files up to this size enter the changes' digest by content


def installed_version(distribution: str) -> str | None:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


def installed_tensorflow() -> str | None:
  """The installed TensorFlow's version, read from its metadata (nothing is imported)."""
  for name in TENSORFLOW_DISTRIBUTIONS:
    if version := installed_version(name):
      return version
  return None


def versions() -> dict[str, str]:
  """Python and the packages that decide the numbers; TensorFlow only if already imported."""
  found = {"python": platform.python_version()}
  for name in PACKAGES + PLUGINS:
    if version := installed_version(name):
      found[name] = version
  tensorflow = sys.modules.get("tensorflow")  # None when blocked (tests, GPU machines)
  if tensorflow is not None:
    found["tensorflow"] = getattr(tensorflow, "__version__", None) or installed_tensorflow()
  return found


def cpu_model() -> str:
  """The CPU's model name (CPU results can depend on its instruction set)."""
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def usable_cpus() -> int:
  """How many CPUs this process may run on (its affinity: `taskset`, a container's cpuset).

  XLA sizes its CPU thread pools by it, and a CPU run pinned to fewer cores gave
  other bits (docs/reproducibility.md).
  """
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):  # not Linux
    return os.cpu_count() or 1


def devices() -> dict[str, Any]:
  """What JAX runs on: platform, device kind, counts, the platform's version (e.g. CUDA)."""
  first = jax.devices()[0]
  return {"platform": first.platform, "kind": first.device_kind, "count": jax.device_count(),
          "local_count": jax.local_device_count(), "process_count": jax.process_count(),
          "platform_version": getattr(first.client, "platform_version", None)}


def _git(*args: str) -> bytes | None:
  try:
    result = subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, timeout=30,
                            check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  return result.stdout if result.returncode == 0 else None


def _changes_digest(untracked: list[str]) -> str | None:
  """sha256 of `git diff HEAD` and the untracked files (path, bytes): equal digest, equal code."""
  diff = _git("diff", "HEAD", "--binary")
  if diff is None:
    return None
  digest = hashlib.sha256(diff)
  for name in sorted(untracked):
    path = CHECKOUT / name
    digest.update(name.encode() + b"\0")
    if path.is_file() and path.stat().st_size <= UNTRACKED_BYTES:
      digest.update(path.read_bytes())
    elif path.is_file():
      digest.update(str(path.stat().st_size).encode())  # a large file: by its size
  return digest.hexdigest()


def git_state() -> dict[str, Any] | None:
  """{'commit', 'dirty', 'changes'} of the checkout this code runs from; None outside one.

  Dirty: changed tracked files or untracked files that git does not ignore (a
  new config file, say), i.e. the commit alone does not give the code;
  'changes' is then a digest of those changes (`_changes_digest`).
  """
  if shutil.which("git") is None:
    return None
  top = _git("rev-parse", "--show-toplevel")
  if top is None or pathlib.Path(top.decode().strip()).resolve() != CHECKOUT:
    return None  # an installed copy of the package, not a checkout
  commit = _git("rev-parse", "HEAD")
  status = _git("status", "--porcelain", "-z")
  untracked = _git("ls-files", "--others", "--exclude-standard", "-z")
  if commit is None or status is None or untracked is None:
    return None
  dirty = bool(status.strip(b"\0"))
  return {"commit": commit.decode().strip(), "dirty": dirty,
          "changes": _changes_digest(untracked.decode().split("\0")[:-1]) if dirty else None}


def latest_checkpoint(workdir: pathlib.Path) -> int | None:
  """The highest finished checkpoint step under workdir/checkpoints (names only, nothing read)."""
  directory = workdir / "checkpoints"
  if not directory.is_dir():
    return None
  return max((int(p.name) for p in directory.iterdir() if p.name.isdigit()), default=None)


def make_record(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
  """This start's record."""
  return {
      "start_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "command": [sys.executable, *sys.argv],
      "cwd": os.getcwd(),
      "checkpoint_at_start": latest_checkpoint(workdir),
      "versions": versions(),
      "devices": devices(),
      "cpu": cpu_model(),
      "usable_cpus": usable_cpus(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "git": git_state(),
      "config": json.loads(json.dumps(config.to_dict(), default=str)),
  }


def read(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
  """The records of every start, the latest last; [] when there is no readable run.json."""
  try:
    starts = json.loads((pathlib.Path(workdir) / RUN_RECORD).read_text()).get("starts", [])
  except (OSError, ValueError, AttributeError):
    return []
  return [start for start in starts if isinstance(start, dict)]


def append(workdir: str | pathlib.Path, config: ml_collections.ConfigDict
           ) -> dict[str, Any] | None:
  """Add this start's record to workdir/run.json; returns it (None in processes other than 0)."""
  if jax.process_index() != 0:
    return None
  workdir = pathlib.Path(workdir)
  record = make_record(config, workdir)
  path = workdir / RUN_RECORD
  temporary = path.with_name(RUN_RECORD + ".tmp")
  temporary.write_text(json.dumps({"starts": [*read(workdir), record]}, indent=1) + "\n")
  os.replace(temporary, path)  # a reader never sees half a file
  return record


def command_line(command: list[str]) -> str:
  """[python, .../gan_jax/main.py, flags...] as 'python -m gan_jax.main flags...'."""
  argv = [str(part) for part in command[1:]]
  script = pathlib.PurePath(argv[0]) if argv else pathlib.PurePath()
  if script.suffix == ".py" and "gan_jax" in script.parts:
    parts = script.with_suffix("").parts
    parts = parts[len(parts) - 1 - parts[::-1].index("gan_jax"):]
    module = ".".join(parts[:-1] if parts[-1] == "__main__" else parts)
    return shlex.join(["python", "-m", module, *argv[1:]])
  return shlex.join(["python", *argv])


def describe(record: Mapping[str, Any]) -> list[str]:
  """A record as a few lines for people."""
  found = record.get("versions", {})
  tensorflow = "" if "tensorflow" in found else "; tensorflow not imported"
  device = record.get("devices", {})
  git = record.get("git")
  changes = " with changes" if git and git.get("dirty") else ""
  changes += f" {git['changes'][:12]}" if changes and git.get("changes") else ""
  code = f"git {git['commit'][:12]}{changes}" if git else "not run from a git checkout"
  command = record.get("command", [])
  platform_name = " ".join(dict.fromkeys(
      str(device.get(key)) for key in ("platform", "platform_version") if device.get(key)))
  return [
      f"started {record.get('start_time')} on {record.get('host')} (pid {record.get('pid')}), "
      f"from checkpoint {record.get('checkpoint_at_start')}",
      "command: " + command_line(command),
      "versions: " + ", ".join(f"{name} {version}" for name, version in found.items()) + tensorflow,
      f"devices: {device.get('count')} x {device.get('kind')} ({platform_name}), "
      f"{device.get('process_count')} process(es); cpu {record.get('cpu')}"
      + (f", {record['usable_cpus']} usable" if record.get("usable_cpus") else ""),
      f"code: {code}",
  ]


def probe_devices(platform_name: str) -> dict[str, Any] | None:
  """What this environment's JAX would train on, as `devices()` says.

  For a CPU run this process's own CPU devices; for an accelerator, a child
  process asks (with preallocation off), so that the caller's process stays on
  the CPU and takes no accelerator memory. None when that cannot be learnt.
  """
  if platform_name == "cpu":
    first = jax.devices("cpu")[0]
    return {"platform": "cpu", "kind": first.device_kind, "count": jax.device_count("cpu"),
            "platform_version": getattr(first.client, "platform_version", None)}
  code = ("import json, jax; d = jax.devices(); print(json.dumps({'platform': d[0].platform, "
          "'kind': d[0].device_kind, 'count': len(d), "
          "'platform_version': getattr(d[0].client, 'platform_version', None)}))")
  env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
  env.pop("JAX_PLATFORMS", None)
  try:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=180, check=False)
    return json.loads(result.stdout.strip().splitlines()[-1])
  except (OSError, subprocess.SubprocessError, ValueError, IndexError):
    return None


def current_environment(platform_name: str) -> dict[str, Any]:
  """This environment in the record's terms, for `differences` (installed versions)."""
  found = {"python": platform.python_version()}
  for name in PACKAGES + PLUGINS:
    found[name] = installed_version(name)
  found["tensorflow"] = installed_tensorflow()
  return {"versions": found, "devices": probe_devices(platform_name), "cpu": cpu_model(),
          "usable_cpus": usable_cpus(), "git": git_state()}


def differences(record: Mapping[str, Any], current: Mapping[str, Any], was: str = "recorded",
                now: str = "here") -> list[str]:
  """One line per way `current` (`current_environment`, or a later record) differs from `record`.

  `was` and `now` name the two sides in the lines ('jax: recorded 0.4.35, here 0.10.2').
  """
  lines = []

  def differ(what: str, before: Any, after: Any, why: str = "") -> None:
    if before != after:
      lines.append(f"{what}: {was} {before}, {now} {after}{why}")

  versions_before, versions_now = record.get("versions", {}), current.get("versions", {})
  for name in dict.fromkeys([*versions_before, *PACKAGES, *PLUGINS]):
    if name == "tensorflow" and name not in versions_now:
      continue  # a record that did not import TensorFlow says nothing of its version
    differ(name, versions_before.get(name) or "not installed",
           versions_now.get(name) or "not installed")
  devices_before, devices_now = record.get("devices") or {}, current.get("devices")
  if devices_now is None:
    lines.append(f"devices: {was} {devices_before.get('count')} x {devices_before.get('kind')}, "
                 f"{now} unknown (JAX could not be asked)")
  else:
    for key in ("platform", "kind", "count", "platform_version"):
      differ(f"device {key}", devices_before.get(key), devices_now.get(key))
  if devices_before.get("platform") == "cpu":  # CPU numbers can depend on the instruction set
    differ("cpu", record.get("cpu"), current.get("cpu"))
    if record.get("usable_cpus"):  # ... and on XLA's thread count (records before it: unknown)
      differ("usable cpus", record.get("usable_cpus"), current.get("usable_cpus"))
  git_before, git_now = record.get("git") or {}, current.get("git") or {}
  differ("git commit", git_before.get("commit", "no checkout"),
         git_now.get("commit", "no checkout"))
  if git_before.get("dirty") or git_now.get("dirty"):
    differ("uncommitted changes", git_before.get("changes") or "none",
           git_now.get("changes") or "none")
  return lines
