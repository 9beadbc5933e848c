"""Curves and the progress GIF from a work directory's metrics.jsonl and sample grids."""

import json
import pathlib
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT
from gan_jax import images as image_lib
from gan_jax.monitor import plots


def fake_run(workdir: pathlib.Path, grid_steps=(10, 20, 30)) -> None:
  """The files a 30-step run with 10 steps per epoch leaves behind (one step logged twice)."""
  records = []
  for step in range(5, 31, 5):
    records.append({"step": step, "epoch": step / 10, "d_loss": 1.4 - step / 50,
                    "g_loss": 0.7 + step / 40, "d_real": 0.5 + step / 100,
                    "d_fake": 0.5 - step / 100})
  records.append({"step": 10, "epoch": 1.0, "sample_diversity": 3.0})
  records.append({**records[1], "d_loss": 9.0})  # a resumed run logged step 10 again
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  rng = np.random.default_rng(0)
  for step in grid_steps:
    grid = image_lib.make_grid(rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8))
    image_lib.save_png(workdir / "samples" / f"step_{step:07d}.png", grid)


def test_read_metrics_keeps_the_last_record_of_a_step(tmp_path):
  fake_run(tmp_path)
  records = plots.read_metrics(tmp_path / "metrics.jsonl")
  steps, d_loss = plots.series(records, "d_loss")
  assert list(steps) == [5, 10, 15, 20, 25, 30]
  assert d_loss[1] == 9.0  # the resumed run's value
  assert list(plots.series(records, "sample_diversity")[0]) == [10]
  assert plots.steps_per_epoch(records) == 10


def test_write_plots_draws_curves_and_one_gif_frame_per_grid(tmp_path):
  fake_run(tmp_path, grid_steps=(10, 20, 30, 40))
  paths = plots.write_plots(tmp_path)
  out = tmp_path / "plots"
  assert paths == [out / "losses.png", out / "d_scores.png", out / "progress.gif"]
  for name in ("losses.png", "d_scores.png"):
    with Image.open(out / name) as image:
      assert image.size == (960, 540)
  frames = iio.imread(out / "progress.gif", index=None)
  grid = iio.imread(tmp_path / "samples" / "step_0000010.png")
  assert frames.shape[0] == 4
  assert frames.shape[2] == grid.shape[1] and frames.shape[1] > grid.shape[0]  # + caption


def test_cli_writes_plots(tmp_path):
  fake_run(tmp_path)
  result = subprocess.run([sys.executable, "-m", "gan_jax.plots", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split() == [str(tmp_path / "plots" / name)
                                   for name in ("losses.png", "d_scores.png", "progress.gif")]


def test_cli_explains_an_empty_workdir(tmp_path, capsys):
  assert plots.main([str(tmp_path)]) == 1
  assert capsys.readouterr().err == (f"error: {tmp_path} has no metrics.jsonl and no "
                                     "samples/step_*.png; pass the --workdir of a training run\n")
  with pytest.raises(SystemExit) as exit_info:
    plots.main([])
  assert exit_info.value.code == 2
  assert "usage: python -m gan_jax.plots [-h] WORKDIR" in capsys.readouterr().err


def test_d_plots_follow_the_losses_metric_names(tmp_path, monkeypatch):
  """Probabilities for BCE runs, raw outputs otherwise; accuracies whenever they were logged."""
  drawn = {}
  monkeypatch.setattr(plots, "plot_curves", lambda path, records, names, title, ylabel, **kw:
                      drawn.setdefault(path.name, (sorted(names), ylabel)) and path)
  raw = [{"step": s, "d_real_logit": 0.6, "d_fake_logit": 0.2, "d_real_acc": 0.7,
          "d_fake_acc": 0.8} for s in (5, 10)]
  plots.d_plots(tmp_path, raw)
  assert drawn == {
      "d_scores.png": (["d_fake_logit", "d_real_logit"], "mean D output"),
      "d_accuracy.png": (["d_fake_acc", "d_real_acc"], "share classified correctly")}
  drawn.clear()
  bce = [{"step": 5, "d_real": 0.6, "d_fake": 0.3}]  # a run logged before the accuracies
  assert [p.name for p in plots.d_plots(tmp_path, bce)] == ["d_scores.png"]
  assert drawn["d_scores.png"] == (["d_fake", "d_real"], "mean D output (probability real)")
