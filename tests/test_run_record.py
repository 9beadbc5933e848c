"""WORKDIR/run.json (gan_jax/run_record.py), the fingerprint command's report of it, and the
pinned versions of constraints/.

No training here: checkpoints are random states of the tiny model's shapes
(tests/test_workdir_lock.py checks the records that real runs and resumes write).
"""

import importlib.metadata
import json
import os
import pathlib
import platform
import socket
import subprocess
import sys
import tomllib
import types

import jax
import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO_ROOT, subprocess_env, tiny_config
from gan_jax.training import family
from gan_jax import checkpoint, run_record
from gan_jax.checkpoint import __main__ as command

CONSTRAINTS = REPO_ROOT / "constraints" / "cpu-py311.txt"
CLEAN = {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False, "changes": None}


def save_random_checkpoint(workdir: pathlib.Path, config, step: int) -> str:
  """A checkpoint at `step` of a seeded random state; its fingerprint."""
  rng = np.random.default_rng(step)

  def fill(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.key(step)
    return rng.standard_normal(x.shape).astype(x.dtype)

  state = jax.tree.map(fill, checkpoint.abstract_state(family.bundle(config), config))
  manager = checkpoint.make_manager(workdir)
  checkpoint.save(manager, state, {"step": step, "seed": config.seed}, config, step=step)
  manager.wait_until_finished()
  return checkpoint.fingerprint(state)


def git_head() -> str | None:
  try:
    result = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=False)
  except OSError:
    return None
  return result.stdout.strip() if result.returncode == 0 else None


def test_each_start_appends_a_record_of_what_it_ran(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow", None)  # blocked, as on the GPU machines
  config = tiny_config()
  first = run_record.append(tmp_path, config)
  (tmp_path / "checkpoints" / "40").mkdir(parents=True)  # as a run that saved step 40
  (tmp_path / "checkpoints" / "50.orbax-checkpoint-tmp").mkdir()  # unfinished: not a step
  second = run_record.append(tmp_path, config)
  starts = run_record.read(tmp_path)
  assert starts == [first, second]  # the latest last
  assert json.loads((tmp_path / "run.json").read_text()) == {"starts": starts}
  assert [s["checkpoint_at_start"] for s in starts] == [None, 40]

  assert second["command"] == [sys.executable, *sys.argv]
  assert second["config"] == json.loads(json.dumps(config.to_dict()))
  assert second["pid"] == os.getpid() and second["host"] == socket.gethostname()
  assert second["start_time"].endswith("+00:00")
  versions = second["versions"]
  assert versions["python"] == platform.python_version()
  for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
    assert versions[name] == importlib.metadata.version(name)
  assert "tensorflow" not in versions
  assert second["devices"] == {
      "platform": "cpu", "kind": jax.devices()[0].device_kind, "count": 8, "local_count": 8,
      "process_count": 1, "platform_version": jax.devices()[0].client.platform_version}
  assert second["usable_cpus"] == len(os.sched_getaffinity(0))
  assert "--xla_force_host_platform_device_count=8" in second["xla_flags"]
  head = git_head()
  assert (second["git"] or {}).get("commit") == head  # None outside a git checkout
  if head is not None:
    assert second["git"]["dirty"] == (second["git"]["changes"] is not None)


def test_tensorflow_is_recorded_only_when_already_imported(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(__version__="2.99.0"))
  assert run_record.versions()["tensorflow"] == "2.99.0"
  monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
  assert "tensorflow" not in run_record.versions()
  assert "tensorflow" not in sys.modules  # and the record did not import it


def test_no_git_or_no_checkout_records_none(monkeypatch, tmp_path):
  monkeypatch.setattr(run_record, "CHECKOUT", tmp_path)  # an installed copy, not a checkout
  assert run_record.git_state() is None
  monkeypatch.setattr(run_record.shutil, "which", lambda name: None)
  assert run_record.git_state() is None


def test_uncommitted_changes_differ_by_their_digest():
  def environment(git):
    return {"versions": {}, "devices": {"platform": "tpu"}, "cpu": "", "git": git}
  same = {"commit": "abc", "dirty": True, "changes": "1111"}
  assert run_record.differences(environment(same), environment(dict(same))) == []
  other = {**same, "changes": "2222"}
  assert run_record.differences(environment(same), environment(other)) == [
      "uncommitted changes: recorded 1111, here 2222"]
  clean = {"commit": "abc", "dirty": False, "changes": None}
  assert run_record.differences(environment(same), environment(clean)) == [
      "uncommitted changes: recorded 1111, here none"]
  assert run_record.differences(environment(same), environment(None)) == [
      "git commit: recorded abc, here no checkout", "uncommitted changes: recorded 1111, here none"]


def test_a_cpu_run_names_another_count_of_usable_cpus():
  # Measured 2026-12-01: faces32_diffaug pinned to one of two cores (taskset -c 0) ended 40
  # steps with other bits than on both (docs/reproducibility.md).
  def environment(platform_name, cpus):
    return {"versions": {}, "devices": {"platform": platform_name}, "cpu": "x",
            "usable_cpus": cpus, "git": None}
  assert run_record.differences(environment("cpu", 2), environment("cpu", 1)) == [
      "usable cpus: recorded 2, here 1"]
  assert run_record.differences(environment("cpu", 2), environment("cpu", 2)) == []
  assert run_record.differences(environment("gpu", 2), environment("gpu", 1)) == []
  assert run_record.differences(environment("cpu", None), environment("cpu", 1)) == []  # older
  described = "\n".join(run_record.describe(environment("cpu", 2)))
  assert "cpu x, 2 usable" in described


def test_a_closed_pipe_ends_a_command_quietly(recorded_run):
  workdir, _ = recorded_run
  process = subprocess.Popen(  # the reader is gone before the command writes a line
      [sys.executable, "-m", "gan_jax.checkpoint", "fingerprint", str(workdir)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=subprocess_env(1))
  process.stdout.close()
  stderr = process.stderr.read()
  assert process.wait(timeout=120) == 141, stderr
  assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_the_command_line_reads_as_it_was_typed():
  python = sys.executable
  typed = run_record.command_line([python, "/src/gan_jax/main.py", "--config", "configs/a b.py"])
  assert typed == "python -m gan_jax.main --config 'configs/a b.py'"
  assert run_record.command_line([python, "/src/gan_jax/checkpoint/__main__.py", "list"]) == (
      "python -m gan_jax.checkpoint list")
  assert run_record.command_line([python, "-c", "train()"]) == "python -c 'train()'"


def test_an_unreadable_run_json_reads_as_no_starts(tmp_path):
  (tmp_path / "run.json").write_text("{not json")
  assert run_record.read(tmp_path) == []
  assert run_record.read(tmp_path / "absent") == []


def fingerprint_output(workdir, capsys, *flags):
  assert command.main(["fingerprint", "--workdir", str(workdir), *flags]) == 0
  return capsys.readouterr().out.splitlines()


@pytest.fixture
def recorded_run(tmp_path, monkeypatch):
  """A workdir with a checkpoint at step 3 and the run.json of its one start (a clean tree)."""
  monkeypatch.setattr(run_record, "git_state", lambda: dict(CLEAN))
  monkeypatch.setitem(sys.modules, "tensorflow", None)
  config = tiny_config()
  run_record.append(tmp_path, config)
  digest = save_random_checkpoint(tmp_path, config, step=3)
  return tmp_path, digest


def rewrite_starts(workdir, change):
  path = workdir / "run.json"
  starts = json.loads(path.read_text())["starts"]
  change(starts)
  path.write_text(json.dumps({"starts": starts}))


def test_fingerprint_prints_the_record_beside_the_hash_and_a_match(recorded_run, capsys):
  workdir, digest = recorded_run
  lines = fingerprint_output(workdir, capsys)
  assert lines[0] == f"step 3 sha256 {digest}"  # the first line, as before
  assert lines[1] == f"written by start 1 of 1 in {workdir}/run.json:"
  text = "\n".join(lines)
  assert f"jax {jax.__version__}" in text and "tensorflow not imported" in text
  assert "devices: 8 x cpu" in text and f"git {CLEAN['commit'][:12]}" in text
  assert lines[-1] == "this environment matches it (versions, devices, code)"


def test_fingerprint_names_each_difference_from_this_environment(recorded_run, capsys):
  workdir, digest = recorded_run

  def elsewhere(starts):
    starts[0]["versions"]["jax"] = "0.4.35"
    starts[0]["versions"]["jax-cuda12-plugin"] = "0.4.35"
    starts[0]["devices"].update(kind="NVIDIA H100 80GB HBM3", count=4)
    starts[0]["devices"]["platform"] = "cpu"  # no GPU probe in a test
    starts[0]["git"]["commit"] = "f" * 40
  rewrite_starts(workdir, elsewhere)
  lines = fingerprint_output(workdir, capsys)
  assert lines[0] == f"step 3 sha256 {digest}"
  at = lines.index("this environment differs from it (a rerun here may give another hash):")
  assert lines[at + 1:] == [
      f"  jax: recorded 0.4.35, here {importlib.metadata.version('jax')}",
      "  jax-cuda12-plugin: recorded 0.4.35, here not installed",
      f"  device kind: recorded NVIDIA H100 80GB HBM3, here {jax.devices()[0].device_kind}",
      "  device count: recorded 4, here 8",
      f"  git commit: recorded {'f' * 40}, here {CLEAN['commit']}"]


def test_fingerprint_picks_the_start_that_wrote_the_step_and_compares_starts(
    recorded_run, capsys):
  workdir, _ = recorded_run

  def resumed_on_other_versions(starts):
    later = json.loads(json.dumps(starts[0]))
    later.update(checkpoint_at_start=3, start_time="later")
    starts[0]["versions"]["optax"] = "0.0.1"
    starts.append(later)
  rewrite_starts(workdir, resumed_on_other_versions)
  lines = fingerprint_output(workdir, capsys, "--step", "3")
  assert lines[1] == f"written by start 1 of 2 in {workdir}/run.json:"  # start 2 began at 3
  assert f"  optax: recorded 0.0.1, here {importlib.metadata.version('optax')}" in lines

  save_random_checkpoint(workdir, tiny_config(), step=6)  # written by start 2
  lines = fingerprint_output(workdir, capsys)
  assert lines[1] == f"written by start 2 of 2 in {workdir}/run.json:"
  at = lines.index("start 1 differs from it (a resume in another environment is not bit-equal "
                   "to an unbroken run):")
  assert lines[at + 1] == f"  optax: start 1 0.0.1, start 2 {importlib.metadata.version('optax')}"
  assert lines[-1] == "this environment matches it (versions, devices, code)"


def pins() -> dict[str, str]:
  """constraints/cpu-py311.txt as canonical name -> version; every line must pin with ==."""
  found = {}
  for line in CONSTRAINTS.read_text().splitlines():
    if not line.strip() or line.startswith("#"):
      continue
    requirement = Requirement(line)
    (specifier,) = requirement.specifier
    assert specifier.operator == "==" and not requirement.marker, line
    name = canonicalize_name(requirement.name)
    assert name not in found, f"{name} pinned twice"
    found[name] = specifier.version
  return found


def project_requirements() -> list[Requirement]:
  project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
  return [Requirement(line)
          for line in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_the_constraints_pin_every_dependency_of_pyproject():
  pinned = pins()
  # The file is for Linux x86_64 and Python 3.11: evaluate pyproject's markers there.
  where = {"platform_machine": "x86_64", "sys_platform": "linux", "platform_system": "Linux",
           "python_version": "3.11", "python_full_version": "3.11.7"}
  for requirement in project_requirements():
    if requirement.marker is not None and not requirement.marker.evaluate(where):
      assert canonicalize_name(requirement.name) not in pinned, requirement
      continue
    name = canonicalize_name(requirement.name)
    assert name in pinned, f"{requirement} is not pinned in {CONSTRAINTS.name}"
    assert requirement.specifier.contains(pinned[name], prereleases=True), (requirement, pinned)


def test_the_installed_versions_are_the_pinned_ones():
  """Strict only with GAN_JAX_CHECK_PINS=1 (a reproduction's venv); else it lists the differences.

  CI installs the latest compatible versions, so there a difference is news, not a failure.
  """
  differ = []
  for name, version in pins().items():
    try:
      installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      installed = "not installed"
    if installed != version:
      differ.append(f"{name} {installed} (pinned {version})")
  if differ and os.environ.get("GAN_JAX_CHECK_PINS") != "1":
    pytest.skip(f"installed versions differ from {CONSTRAINTS.name}: {', '.join(differ)}")
  assert not differ, differ
