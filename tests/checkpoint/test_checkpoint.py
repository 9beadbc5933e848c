"""Checkpoint contents, fingerprints, the resume policy, damaged checkpoints and loading G.

No training here: states are random arrays of the tiny model's shapes, so
these tests compile almost nothing (tests/test_resume.py trains).
"""

import logging
import os
import pathlib

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P, SingleDeviceSharding

from conftest import save_steps, tiny_config
from gan_jax.training import family
from gan_jax import checkpoint
from gan_jax.checkpoint import __main__ as command
from gan_jax.config import resume
from gan_jax.explore import loader


def checkpoint_main(*argv):
  """python -m gan_jax.checkpoint ARGV, in this process."""
  return command.main(list(argv))


def replicated(num_devices):
  return NamedSharding(Mesh(np.asarray(jax.devices()[:num_devices]), ("batch",)), P())


def test_fingerprint_depends_on_values_not_on_order():
  a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": {"x": np.zeros(2, np.int32)}}
  reordered = {"b": {"x": np.zeros(2, np.int32)}, "w": a["w"].copy()}
  assert checkpoint.fingerprint(a) == checkpoint.fingerprint(reordered)
  changed = {"w": a["w"].copy(), "b": {"x": np.array([0, 1], np.int32)}}
  retyped = {"w": a["w"].astype(np.float64), "b": a["b"]}
  reshaped = {"w": a["w"].reshape(3, 2), "b": a["b"]}
  renamed = {"v": a["w"], "b": a["b"]}
  digests = {checkpoint.fingerprint(t) for t in (a, changed, retyped, reshaped, renamed)}
  assert len(digests) == 5
  assert len(checkpoint.fingerprint(a)) == 64  # sha256 hex


def test_fingerprint_of_state_matches_saved_checkpoint(tmp_path, capsys):
  config = tiny_config()
  _, states = save_steps(tmp_path, config, [5, 10])
  step, tree = checkpoint.restore_tree(tmp_path)
  assert step == 10
  assert checkpoint.fingerprint(tree) == checkpoint.fingerprint(states[10])
  assert checkpoint.fingerprint(states[5]) != checkpoint.fingerprint(states[10])

  assert checkpoint_main("fingerprint", str(tmp_path), "--step", "5") == 0
  assert capsys.readouterr().out.split() == [
      "step", "5", "sha256", checkpoint.fingerprint(states[5])]
  assert checkpoint_main("list", str(tmp_path)) == 0
  lines = capsys.readouterr().out.splitlines()
  assert [line.split()[:2] for line in lines] == [["step", "5"], ["step", "10"]]
  assert all(line.endswith("MiB") for line in lines)


def test_cli_errors_are_one_line(tmp_path, capsys, caplog):
  assert checkpoint_main("list", str(tmp_path)) == 1
  assert "no checkpoints/ under" in capsys.readouterr().err
  save_steps(tmp_path, tiny_config(), [3])
  with caplog.at_level(logging.INFO, logger="absl"):
    assert checkpoint_main("fingerprint", str(tmp_path), "--step", "4") == 1
  assert "no checkpoint for step 4" in capsys.readouterr().err
  # Orbax's notice on opening read-only is dropped: the error stays the only line.
  assert "read only" not in caplog.text


def test_restore_onto_fewer_devices(tmp_path):
  config = tiny_config()
  manager, states = save_steps(tmp_path, config, [7], sharding=replicated(8))
  gan = family.bundle(config)
  for sharding in (SingleDeviceSharding(jax.devices()[0]), replicated(2)):
    state, data = checkpoint.restore(manager, checkpoint.abstract_state(gan, config, sharding))
    assert data == {"step": 7, "seed": 0}
    assert state.g_params["project"]["kernel"].sharding == sharding
    assert state.key.sharding == sharding
    assert checkpoint.fingerprint(state) == checkpoint.fingerprint(states[7])


def test_config_check_allows_length_and_cadence_only(tmp_path):
  saved = tiny_config().to_dict()
  longer = tiny_config(train__num_steps=5000)
  longer.log_every, longer.checkpoint_every, longer.checkpoint_keep = 7, 3, 9
  longer.data.path = "/elsewhere/faces"
  resume.check_config(saved, longer, tmp_path)  # no error

  wider = tiny_config()
  wider.model.width = 16
  wider.loss.r1_every = 4  # ends in _every, but changes the training
  with pytest.raises(checkpoint.CheckpointError) as error:
    resume.check_config(saved, wider, tmp_path)
  message = str(error.value)
  assert "cannot be resumed" in message and "new --workdir" in message
  assert "model.width: saved 8, now 16" in message
  assert "loss.r1_every: saved 1, now 4" in message


def test_resume_refuses_changed_model(tmp_path):
  config = tiny_config()
  manager, _ = save_steps(tmp_path, config, [4])
  changed = tiny_config(train__batch_size=64)
  gan = family.bundle(changed)
  with pytest.raises(checkpoint.CheckpointError, match="train.batch_size: saved 32, now 64"):
    checkpoint.restore(manager, checkpoint.abstract_state(gan, changed), config=changed)
  # Same config but arrays of other shapes (e.g. changed model code): also refused, not "damaged".
  wider = tiny_config()
  wider.model.width = 16
  with pytest.raises(checkpoint.CheckpointError, match="does not fit the model"):
    checkpoint.restore(manager, checkpoint.abstract_state(family.bundle(wider), wider))
  assert manager.all_steps() == [4]


def damage(step_dir: pathlib.Path, how: str) -> None:
  data_files = sorted((step_dir / "state").rglob("d/*"), key=lambda f: f.stat().st_size)
  if how == "truncate":
    with open(data_files[-1], "r+b") as f:  # the largest: it holds the arrays
      f.truncate(100)
  elif how == "delete":
    os.remove(step_dir / "state" / "manifest.ocdbt")
  else:
    os.remove(step_dir / "state" / "_METADATA")


@pytest.mark.parametrize("how", ["truncate", "delete", "delete_metadata"])
def test_damaged_latest_falls_back_to_previous(tmp_path, caplog, how):
  config = tiny_config()
  manager, states = save_steps(tmp_path, config, [1, 2, 3])
  damage(tmp_path / "checkpoints" / "3", how)
  abstract = checkpoint.abstract_state(family.bundle(config), config)
  with caplog.at_level(logging.WARNING, logger="absl"):
    state, data = checkpoint.restore(manager, abstract, config=config, move_damaged=True)
  assert data["step"] == 2
  assert checkpoint.fingerprint(state) == checkpoint.fingerprint(states[2])
  assert "checkpoint at step 3" in caplog.text and "unreadable" in caplog.text
  # Moved aside, so the resumed run can save step 3 again.
  assert manager.all_steps() == [1, 2]
  assert (tmp_path / checkpoint.DAMAGED_DIR / "3").is_dir()
  checkpoint.save(manager, states[3], {"step": 3, "seed": 0}, config, step=3)
  manager.wait_until_finished()
  assert checkpoint.restore_tree(tmp_path)[0] == 3


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
  config = tiny_config()
  manager, _ = save_steps(tmp_path, config, [1, 2])
  for step in (1, 2):
    damage(tmp_path / "checkpoints" / str(step), "delete")
  abstract = checkpoint.abstract_state(family.bundle(config), config)
  with pytest.raises(checkpoint.CheckpointError, match="no usable checkpoint .*step 2: .*step 1:"):
    checkpoint.restore(manager, abstract, config=config, move_damaged=True)
  assert manager.all_steps() == [1, 2]  # nothing moved when nothing is usable
  with pytest.raises(checkpoint.CheckpointError, match="start the run again"):
    checkpoint.restore_tree(tmp_path)


def test_saved_config_takes_defaults_only_for_missing_options():
  saved = tiny_config().to_dict()
  del saved["eval"]  # as saved before periodic evaluation existed
  del saved["train"]["ema_rampup"]
  saved["model"]["width"] = 4
  merged = resume.with_defaults(saved)
  defaults = resume.with_defaults({})
  assert merged["eval"] == defaults["eval"] and "every" in merged["eval"]
  assert merged["train"]["ema_rampup"] == defaults["train"]["ema_rampup"]
  assert merged["model"]["width"] == 4 and merged["data"]["path"] == "unused"


@pytest.mark.parametrize("ema_decay", [0.0, 0.999])
def test_load_reads_only_the_networks_and_samples_with_the_ema(tmp_path, ema_decay):
  config = tiny_config(train__ema_decay=ema_decay)
  _, states = save_steps(tmp_path, config, [6])
  saved = states[6]
  model = loader.load(tmp_path, discriminator=True)
  assert model.step == 6 and model.config.to_dict() == config.to_dict()
  state = model.state
  assert state.g_opt_state is None and state.d_opt_state is None and state.step is None
  for field in ("g_params", "g_batch_stats", "d_params", "d_batch_stats", "ema_g_params"):
    assert checkpoint.fingerprint(getattr(state, field)) == checkpoint.fingerprint(
        getattr(saved, field)), field
  assert model.uses_ema == bool(ema_decay) and (state.ema_g_params is None) == (not ema_decay)
  z = np.random.default_rng(0).standard_normal((2, config.model.latent_dim)).astype(np.float32)
  expected = saved.ema_g_params if ema_decay else saved.g_params
  apply = jax.jit(lambda params, stats, z: model.gan.generator.apply(
      {"params": params, "batch_stats": stats}, z, train=False))
  images = apply(expected, saved.g_batch_stats, z)
  assert images.shape == (2, 16, 16, 3)
  np.testing.assert_array_equal(model.generate(z, batch_size=2), images)
  assert loader.load(tmp_path).state.d_params is None


def test_load_without_checkpoint_says_train_first(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoints in .* train first"):
    loader.load(tmp_path)
  save_steps(tmp_path, tiny_config(), [3, 6])
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint for step 4 .*available "
                                                       "steps: 3, 6"):
    loader.load(tmp_path, step=4)
