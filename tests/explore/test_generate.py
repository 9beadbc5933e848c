"""`python -m gan_jax.generate` and the shared loading/latent helpers."""

import numpy as np
import pytest

from gan_jax.explore import generate
from gan_jax.explore import loader
from gan_jax.explore import latents as latent_lib
from gan_jax import errors


def run_generate(workdir, out, *flags):
  assert generate.main(["--workdir", str(workdir), "--out", str(out), *flags]) == 0
  return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


def test_same_seed_gives_byte_identical_pngs(tiny_workdir, tmp_path):
  first = run_generate(tiny_workdir, tmp_path / "a", "--num", "5", "--seed", "0", "--grid")
  again = run_generate(tiny_workdir, tmp_path / "b", "--num", "5", "--seed", "0", "--grid")
  assert sorted(first) == ["grid.png"] + [f"seed0000_{i:05d}.png" for i in range(5)]
  assert first == again
  other = run_generate(tiny_workdir, tmp_path / "c", "--num", "5", "--seed", "1")
  assert all(other[f"seed0001_{i:05d}.png"] != first[f"seed0000_{i:05d}.png"] for i in range(5))


def test_num_and_batch_size_do_not_change_images(tiny_workdir, tmp_path):
  few = run_generate(tiny_workdir, tmp_path / "few", "--num", "2", "--npy")
  many = run_generate(tiny_workdir, tmp_path / "many", "--num", "5", "--batch_size", "3", "--npy")
  assert few["seed0000_00001.png"] == many["seed0000_00001.png"]
  images = np.load(tmp_path / "many" / "images.npy")
  assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8


def test_older_step_and_truncation(tiny_workdir, tmp_path):
  latest = run_generate(tiny_workdir, tmp_path / "latest", "--num", "2", "--grid_only")
  older = run_generate(tiny_workdir, tmp_path / "older", "--num", "2", "--grid_only",
                       "--step", "10")
  assert list(latest) == ["grid.png"] and latest != older
  run_generate(tiny_workdir, tmp_path / "trunc", "--num", "3", "--truncation", "0.5",
               "--save_latents")
  z = np.load(tmp_path / "trunc" / "latents.npy")
  assert z.shape == (3, 16) and np.all(np.abs(z) <= 0.5)


def test_ema_batch_stats_reaches_the_loader(tiny_workdir, tmp_path, monkeypatch):
  """--ema_batch_stats picks the statistics loader.load samples the EMA with (what each
  mode does: test_ema_stats.py); without it, the run's own setting (None)."""
  asked = []
  real_load = loader.load
  def recording_load(*args, **kwargs):
    asked.append(kwargs.get("ema_batch_stats"))
    return real_load(*args, **kwargs)
  monkeypatch.setattr(loader, "load", recording_load)
  run_generate(tiny_workdir, tmp_path / "run", "--num", "2", "--grid_only")
  recomputed = run_generate(tiny_workdir, tmp_path / "own", "--num", "2", "--grid_only",
                            "--ema_batch_stats", "recompute")
  assert asked == [None, "recompute"]
  # tiny keeps no EMA, so there are no EMA statistics to recompute: the same faces.
  assert recomputed == run_generate(tiny_workdir, tmp_path / "live", "--num", "2", "--grid_only")


def test_latents_are_seeded_per_index():
  z = latent_lib.latents(3, 4, 16)
  np.testing.assert_array_equal(z[:2], latent_lib.latents(3, 2, 16))
  np.testing.assert_array_equal(z[2:], latent_lib.latents(3, 2, 16, start=2))
  np.testing.assert_array_equal(latent_lib.seed_latents([3], 16)[0], z[0])
  assert not np.array_equal(z, latent_lib.latents(4, 4, 16))
  with pytest.raises(errors.ExploreError, match="truncation must be > 0"):
    latent_lib.latents(0, 1, 16, truncation=0.0)


def test_load_reads_only_the_networks(tiny_workdir):
  model = loader.load(tiny_workdir)
  assert model.step == 20 and model.latent_dim == 16 and model.resolution == 16
  assert model.state.g_opt_state is None and model.state.d_params is None
  assert "project" in model.state.g_params and "bn0" in model.state.g_batch_stats
  with_d = loader.load(tiny_workdir, step=10, discriminator=True)
  assert with_d.step == 10 and "logit" in with_d.state.d_params
  assert with_d.state.d_opt_state is None


def test_user_errors_are_one_line(tiny_workdir, tmp_path, capsys):
  assert generate.main(["--workdir", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
  assert "no checkpoints in" in capsys.readouterr().err
  assert generate.main(["--workdir", str(tiny_workdir), "--step", "7", "--out", str(tmp_path)]) == 1
  assert "available steps: 10, 20" in capsys.readouterr().err


def test_help_lists_flags(capsys):
  with pytest.raises(SystemExit) as exit_info:
    generate.main(["--help"])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  for flag in ("--workdir", "--step", "--num", "--seed", "--truncation", "--out", "--grid"):
    assert flag in text
