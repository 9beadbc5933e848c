"""Shared test set-up.

Every test process sees 8 fake CPU devices, so the multi-device code paths
(shard_map, pmap, synchronised batch norm) run in every test session.

The tests sit in folders named as gan_jax's (tests/training/ for gan_jax/training/, ...),
with no __init__.py: test module names are unique across them, and test modules import
the helpers below with `from conftest import ...` (pytest imports this file as the
module `conftest`, with tests/ on sys.path).
"""

import gc
import os
import pathlib

# XLA's CPU collectives abort the process when one device's thread is 40 s late to an
# all-reduce: "Termination timeout for `all reduce` ... only 7 of them arrived" (2026-11-30).
# On 2 shared cores (pytest-xdist workers, subprocess runs, the fake devices' threads) a
# thread can be late without anything being wrong, so tests wait 5 minutes. Not longer: the
# same message also came from a real hang (CPU idle; test_vaegan.py, train_in_subprocess).
PATIENT_COLLECTIVES = ("--xla_cpu_collective_call_warn_stuck_timeout_seconds=120 "
                       "--xla_cpu_collective_call_terminate_timeout_seconds=300")


# Most of a CPU test's time is XLA compiling tiny programs, much of it LLVM optimising the
# machine code. Without that (2026-12-01, 2-core dev CPU, test_resnet.py's tiny networks):
# initialising compiled in 5.6 s instead of 9-12 s and the step in 4.9 s instead of 7-9 s,
# while the step ran 2x slower on one device and as fast on eight; the whole suite took
# 9:42 instead of 13:19. Tests check behaviour (equal bits of equal runs, 8 devices == 1,
# learning), not how well the code is optimised; bench measures speed.
QUICK_COMPILES = "--xla_backend_optimization_level=0"


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for a test's subprocess with `devices` fake CPU devices."""
  return f"--xla_force_host_platform_device_count={devices} {PATIENT_COLLECTIVES} {QUICK_COMPILES}"


def subprocess_env(devices: int, xla_cache: "os.PathLike | None" = None, **extra: str) -> dict:
  """The environment of a test's subprocess: the CPU with `devices` fake devices.

  With `xla_cache`, the subprocess keeps its compiled programs there, all of them
  (the tiny ones too), so the next run of the same programs skips compiling. JAX
  writes the cache unlocked: give processes that run at the same time their own.
  """
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(devices))
  if xla_cache is not None:
    env.update(JAX_COMPILATION_CACHE_DIR=str(xla_cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  env.update(extra)
  return env


# `python -m gan_jax.main` with TensorFlow blocked, as on the GPU machines: its import costs
# each start about 5 s of CPU, and tests that are not about tf.data need none of it.
MAIN_WITHOUT_TENSORFLOW = (
    "-c", "import runpy, sys; sys.modules['tensorflow'] = None; "
    "runpy.run_module('gan_jax.main', run_name='__main__', alter_sys=True)")


# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + xla_flags(8)).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# A persistent XLA compilation cache for this test process (each pytest-xdist
# worker has its own, removed at exit): many tests build the same programs (the
# tiny config's step from fresh GAN objects, the same samplers), and a cache hit
# skips XLA's compile, most of a CPU test's time. Set here, not in the
# environment, so subprocesses that tests start (several at once in
# test_distributed) do not share one directory: JAX writes entries unlocked.
_XLA_CACHE = tempfile.mkdtemp(prefix="gan_jax_test_xla_cache_")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _compiled_programs_freed_after_each_module():
  """Each XLA:CPU program JAX keeps compiled holds memory maps of its own: two test modules
  left about 14,500 in one process, and a worker that runs half the suite passed Linux's
  default limit of 65,530 (vm.max_map_count) and aborted inside XLA ("Fatal Python error:
  Aborted"). Programs a module compiled are dropped when it ends (the next module compiles
  its own)."""
  yield
  jax.clear_caches()
  gc.collect()


@pytest.fixture(scope="session", autouse=True)
def _float32_products_on_every_cpu():
  """train.conv_dtype=auto reads as float32 products here, whatever CPU runs the tests: the
  8-devices == 1-device checks compare to 1e-5, past which bfloat16 products' rounding of a
  differently split batch goes, and results must not depend on the CI machine's CPU flags.
  Subprocesses (the commands) still see the real CPU; tests of bfloat16 ask for it by name."""
  from gan_jax.models import operand_dtype  # pylint: disable=import-outside-toplevel
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(operand_dtype, "cpu_flags", frozenset)
    yield


DEFAULT_FACES = REPO_ROOT.parent / "shared" / "data" / "celeba6k"


@pytest.fixture(scope="session")
def faces_dir() -> pathlib.Path:
  """The folder of real CelebA faces (GAN_JAX_FACES, default ../shared/data/celeba6k).

  Skips when absent, except under CI=true where a missing data set is a failure.
  """
  path = pathlib.Path(os.environ.get("GAN_JAX_FACES", DEFAULT_FACES))
  if not path.is_dir() or not any(path.iterdir()):
    message = f"real faces not found at {path} (set GAN_JAX_FACES)"
    if os.environ.get("CI") == "true":
      pytest.fail(message + "; CI must have ../shared/data/celeba6k")
    pytest.skip(message)
  return path


@pytest.fixture(scope="session")
def faces16(faces_dir) -> np.ndarray:
  """The first 2,000 real faces, centre-cropped and resized to 16 px (uint8)."""
  from gan_jax.data import loader as data_loader
  return data_loader.load_image_array(faces_dir, resolution=16, crop="center", limit=2000)


@pytest.fixture(scope="session")
def tiny_workdir(faces16, tmp_path_factory) -> pathlib.Path:
  """A workdir of configs/tiny.py trained 20 steps on 512 real faces: checkpoints 10 and 20.

  For the exploration tools (generate, interpolate, project, nearest). The
  faces go to a temporary .npy, which is also the run's data.path.
  """
  from gan_jax import start
  data = tmp_path_factory.mktemp("tiny_data") / "faces16.npy"
  np.save(data, np.asarray(faces16[:512]))
  config = tiny_config(data__path=str(data), train__num_steps=20, checkpoint_every=10,
                       log_every=10, sample_every=20)
  workdir = tmp_path_factory.mktemp("tiny_run")
  start.run(config, str(workdir))  # as gan_jax.main trains: run.json has its start
  return workdir


# The one builder of the tests' small configs, and the pixel-space "did it learn" measure.

def tiny_config(overrides=(), /, *, base: str = "tiny", **options):
  """configs/tiny.py (16 px, 8 channels, latent 16, batch 32) with its options changed.

  `overrides` maps "section.option" (or a top-level "option") to a value; keyword arguments
  are the same as section__option=value and are applied after them. data.path is the
  placeholder "unused" (a start stops at the data) unless an override sets it. `base` names
  another module of configs/ to start from (the residual tests' "resnet32").
  """
  import importlib  # pylint: disable=import-outside-toplevel
  config = importlib.import_module(f"configs.{base}").get_config()
  config.data.path = "unused"
  named = {name.replace("__", "."): value for name, value in options.items()}
  for name, value in {**dict(overrides), **named}.items():
    *sections, option = name.split(".")
    owner = config
    for section in sections:
      owner = owner[section]
    owner[option] = value
  return config


def pixel_frechet(gan, state, real, num=512, seed=123):
  """Fréchet distance between `num` samples of `gan` at `state` (latents from key `seed`) and
  real[:num], both as metrics/frechet.py's random pixel projections: it falls as the samples
  approach the faces (the learning tests' measure; Inception would be slow on a CPU)."""
  from gan_jax.metrics.frechet import frechet_distance_of, pixel_projection_features
  z = jax.random.normal(jax.random.key(seed), (num, gan.latent_dim))
  fake = np.asarray(jax.jit(gan.sample)(state, z))
  return frechet_distance_of(pixel_projection_features(fake), pixel_projection_features(real[:num]))


# Checkpoints without training, for tests of the checkpoint code and of the tools that
# read workdirs (tests/checkpoint/test_checkpoint.py, tests/benchmarks/test_results_tools.py).

def random_state(config, seed=0, step=0, sharding=None):
  """A GANState of the model's shapes filled with seeded random numbers."""
  from gan_jax import checkpoint
  from gan_jax.training import family
  rng = np.random.default_rng(seed)

  def fill(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.key(seed)
    if np.issubdtype(x.dtype, np.floating):
      return rng.standard_normal(x.shape).astype(x.dtype)
    return rng.integers(0, 1000, x.shape).astype(x.dtype)

  state = jax.tree.map(fill, checkpoint.abstract_state(family.bundle(config), config))
  state = state.replace(step=np.int32(step))
  return jax.device_put(state, sharding) if sharding is not None else state


def save_steps(workdir, config, steps, sharding=None, keep=3):
  """Saves random_state(seed=step) at each of `steps`; returns the manager and the states."""
  from gan_jax import checkpoint
  manager = checkpoint.make_manager(workdir, keep)
  states = {}
  for step in steps:
    states[step] = random_state(config, seed=step, step=step, sharding=sharding)
    checkpoint.save(manager, states[step], {"step": step, "seed": config.seed}, config, step=step)
  manager.wait_until_finished()
  return manager, states
