"""Latent interpolation helpers and `python -m gan_jax.interpolate`."""

import numpy as np
import pytest
from PIL import Image

from gan_jax.explore import interpolate
from gan_jax.explore import latents as latent_lib
from gan_jax import errors


@pytest.mark.parametrize("method", ["slerp", "lerp"])
def test_endpoints_equal_the_inputs(method):
  a, b = latent_lib.latents(0, 2, 16)
  path = latent_lib.interpolate(a, b, np.linspace(0, 1, 7), method)
  assert path.shape == (7, 16) and path.dtype == np.float32
  np.testing.assert_array_equal(path[0], a)
  np.testing.assert_array_equal(path[-1], b)


def test_slerp_stays_on_the_sphere_and_lerp_does_not():
  a, b = latent_lib.latents(1, 2, 64)
  b = b / np.linalg.norm(b) * np.linalg.norm(a)
  middle_slerp = latent_lib.slerp(a, b, [0.5])[0]
  middle_lerp = latent_lib.lerp(a, b, [0.5])[0]
  np.testing.assert_allclose(np.linalg.norm(middle_slerp), np.linalg.norm(a), rtol=1e-5)
  assert np.linalg.norm(middle_lerp) < 0.9 * np.linalg.norm(a)
  # Parallel vectors: no great circle, slerp falls back to lerp.
  np.testing.assert_allclose(latent_lib.slerp(a, 2 * a, [0.5]), latent_lib.lerp(a, 2 * a, [0.5]))


def test_walk_lengths():
  keys = latent_lib.seed_latents([3, 7, 11, 3], 16)
  assert latent_lib.walk(keys, 30).shape == (90, 16)  # loop: no repeated last frame
  np.testing.assert_array_equal(latent_lib.walk(keys, 30)[30], keys[1])
  assert latent_lib.walk(keys[:3], 30).shape == (61, 16)  # open walk ends on its last keyframe
  assert latent_lib.pair_rows(keys[:3], 5).shape == (2, 5, 16)
  with pytest.raises(errors.ExploreError, match="at least 2 keyframes"):
    latent_lib.walk(keys[:1], 30)


def run_interpolate(workdir, *flags):
  return interpolate.main(["--workdir", str(workdir), *flags])


def test_loop_gif_has_90_frames(tiny_workdir, tmp_path):
  out = tmp_path / "walk.gif"
  assert run_interpolate(tiny_workdir, "--seeds", "3,7,11,3", "--frames", "30", "--out",
                         str(out)) == 0
  with Image.open(out) as gif:
    assert gif.n_frames == 90 and gif.size == (16, 16) and gif.info["loop"] == 0
  again = tmp_path / "again.gif"
  run_interpolate(tiny_workdir, "--seeds", "3,7,11,3", "--frames", "30", "--out", str(again))
  assert out.read_bytes() == again.read_bytes()


def test_grid_has_a_row_per_pair(tiny_workdir, tmp_path):
  out = tmp_path / "grid.png"
  assert run_interpolate(tiny_workdir, "--seeds", "3,7,11", "--frames", "5", "--method", "lerp",
                         "--zoom", "2", "--out", str(out)) == 0
  with Image.open(out) as grid:  # 2 rows x 5 columns of 32 px tiles, 2 px padding
    assert grid.size == (5 * 34 + 2, 2 * 34 + 2)


def test_latent_files_as_keyframes(tiny_workdir, tmp_path):
  z = latent_lib.latents(5, 2, 16)
  np.save(tmp_path / "a.npy", z[0])
  np.save(tmp_path / "b.npy", z[1])
  out = tmp_path / "ab.gif"
  assert run_interpolate(tiny_workdir, "--latents", f"{tmp_path}/a.npy,{tmp_path}/b.npy",
                         "--frames", "4", "--out", str(out)) == 0
  with Image.open(out) as gif:
    assert gif.n_frames == 5


def test_user_errors(tiny_workdir, tmp_path, capsys):
  assert run_interpolate(tiny_workdir, "--seeds", "1,2", "--out", str(tmp_path / "w.avi")) == 1
  assert "must end in .gif, .mp4, .png" in capsys.readouterr().err
  np.save(tmp_path / "bad.npy", np.zeros(3))
  assert run_interpolate(tiny_workdir, "--latents", f"{tmp_path}/bad.npy,{tmp_path}/bad.npy",
                         "--out", str(tmp_path / "w.gif")) == 1
  assert "shape (16,)" in capsys.readouterr().err


def test_mp4_without_ffmpeg_says_what_to_install(tiny_workdir, tmp_path, capsys):
  try:
    import imageio_ffmpeg  # noqa: F401
    pytest.skip("imageio-ffmpeg is installed")
  except ImportError:
    pass
  assert run_interpolate(tiny_workdir, "--seeds", "1,2", "--out", str(tmp_path / "w.mp4")) == 1
  assert "pip install imageio-ffmpeg" in capsys.readouterr().err


def test_help_lists_flags(capsys):
  with pytest.raises(SystemExit) as exit_info:
    interpolate.main(["--help"])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  for flag in ("--workdir", "--seeds", "--latents", "--frames", "--method", "--out", "--fps"):
    assert flag in text
