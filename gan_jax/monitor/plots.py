"""Training curves and a progress GIF from a run's work directory.

  python -m gan_jax.plots WORKDIR

reads WORKDIR/metrics.jsonl and WORKDIR/samples/step_*.png and writes
WORKDIR/plots/losses.png, d_scores.png (D(x) and D(G(z)) for the BCE losses,
D's raw mean outputs for the others), d_accuracy.png (the share of real and
fake images D classifies correctly) and progress.gif. Training calls this at
its end too.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

import numpy as np

from gan_jax import cli
from gan_jax.errors import DataError
from gan_jax.monitor.writer import METRICS_FILE, SAMPLES_DIR

PLOTS_DIR = "plots"
SAMPLE_PATTERN = re.compile(r"step_(\d+)\.png$")


def read_metrics(path: str | pathlib.Path) -> list[dict]:
  """The records of metrics.jsonl in step order; a resumed run's later record for a step wins."""
  by_step_and_keys = {}
  for line in pathlib.Path(path).read_text().splitlines():
    if line.strip():
      record = json.loads(line)
      by_step_and_keys[(record["step"], tuple(sorted(record)))] = record
  return [by_step_and_keys[key] for key in sorted(by_step_and_keys)]


def series(records: list[dict], name: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) of one scalar, over the records that have it."""
  points = [(r["step"], r[name]) for r in records if name in r]
  steps, values = zip(*points) if points else ((), ())
  return np.asarray(steps, np.int64), np.asarray(values, np.float64)


def steps_per_epoch(records: list[dict]) -> float | None:
  for r in records:
    if r.get("epoch"):
      return r["step"] / r["epoch"]
  return None


def plot_curves(path: pathlib.Path, records: list[dict], names: dict[str, str], title: str,
                ylabel: str, ylim: tuple[float, float] | None = None,
                hlines: dict[str, float] | None = None) -> pathlib.Path:
  """One line per scalar in `names` (key -> legend label) against steps, epochs on top."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
  for name, label in names.items():
    steps, values = series(records, name)
    if len(steps):
      ax.plot(steps, values, label=label, linewidth=1.5, marker="." if len(steps) < 30 else None)
  for label, y in (hlines or {}).items():
    ax.axhline(y, color="gray", linestyle="--", linewidth=1, label=label)
  ax.set_xlabel("training step")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  if ylim:
    ax.set_ylim(*ylim)
  ax.grid(True, alpha=0.3)
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a curve
  per_epoch = steps_per_epoch(records)
  if per_epoch:
    top = ax.secondary_xaxis("top", functions=(lambda s: s / per_epoch, lambda e: e * per_epoch))
    top.set_xlabel("epoch")
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path


def sample_grids(samples_dir: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
  """(step, path) of every saved sample grid, in step order."""
  found = [(int(m.group(1)), p) for p in samples_dir.glob("step_*.png")
           if (m := SAMPLE_PATTERN.search(p.name))]
  return sorted(found)


def progress_gif(path: pathlib.Path, grids: list[tuple[int, pathlib.Path]],
                 frame_ms: int = 500) -> pathlib.Path:
  """One frame per sample grid, captioned with its step, looping forever."""
  import imageio.v3 as iio
  from PIL import Image, ImageDraw, ImageFont

  frames = []
  for step, grid_path in grids:
    grid = Image.open(grid_path).convert("RGB")
    caption = max(14, grid.height // 20)
    frame = Image.new("RGB", (grid.width, grid.height + caption), "white")
    frame.paste(grid, (0, caption))
    font = ImageFont.load_default(size=int(caption * 0.8))
    ImageDraw.Draw(frame).text((4, 1), f"step {step}", fill="black", font=font)
    frames.append(np.asarray(frame))
  path.parent.mkdir(parents=True, exist_ok=True)
  iio.imwrite(path, np.stack(frames), extension=".gif", duration=frame_ms, loop=0)
  return path


def has(records: list[dict], name: str) -> bool:
  return any(name in r for r in records)


def d_plots(out: pathlib.Path, records: list[dict]) -> list[pathlib.Path]:
  """D's outputs as its loss reads them (training/losses.py, d_metrics), and its accuracies."""
  written = []
  if has(records, "d_real"):  # BCE losses: probabilities
    written.append(plot_curves(out / "d_scores.png", records,
                               {"d_real": "D(x), real faces", "d_fake": "D(G(z)), generated"},
                               "Discriminator outputs", "mean D output (probability real)",
                               ylim=(0.0, 1.0), hlines={"0.5 (D undecided)": 0.5}))
  elif has(records, "d_real_logit"):  # lsgan, hinge, wgan-gp: scores, not probabilities
    written.append(plot_curves(out / "d_scores.png", records,
                               {"d_real_logit": "real faces", "d_fake_logit": "generated"},
                               "Discriminator outputs (raw, not probabilities)",
                               "mean D output"))
  if has(records, "d_real_acc"):
    written.append(plot_curves(out / "d_accuracy.png", records,
                               {"d_real_acc": "real faces called real",
                                "d_fake_acc": "generated faces called fake"},
                               "Discriminator accuracy (by the loss's decision boundary)",
                               "share classified correctly", ylim=(0.0, 1.02),
                               hlines={"0.5 (chance)": 0.5}))
  return written


def write_plots(workdir: str | pathlib.Path) -> list[pathlib.Path]:
  """Write every plot that the run's files allow; returns their paths."""
  workdir = pathlib.Path(workdir)
  out, written = workdir / PLOTS_DIR, []
  metrics_path = workdir / METRICS_FILE
  if metrics_path.exists():
    records = read_metrics(metrics_path)
    written.append(plot_curves(out / "losses.png", records,
                               {"d_loss": "discriminator loss", "g_loss": "generator loss"},
                               "Losses (averaged over each log interval)", "loss"))
    written.extend(d_plots(out, records))
    if has(records, "recon_loss"):  # a VAE-GAN (training/vaegan_step.py)
      written.append(plot_curves(out / "vae.png", records,
                                 {"recon_loss": "reconstruction error in D's features",
                                  "kl": "KL(q(z|x) || N(0, I))"},
                                 "VAE-GAN: reconstruction and prior terms",
                                 "per image (summed over features / latents)"))
      # Its own axes: pixel MSE is below 1, the terms above in the hundreds.
      written.append(plot_curves(out / "vae_pixel_mse.png", records,
                                 {"recon_pixel_mse": "training faces' reconstructions"},
                                 "VAE-GAN: reconstruction error in pixels", "pixel MSE"))
  grids = sample_grids(workdir / SAMPLES_DIR)
  if grids:
    written.append(progress_gif(out / "progress.gif", grids))
  return written


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m gan_jax.plots", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("workdir", metavar="WORKDIR", help="the --workdir of a training run")
  return parser


def run(args: argparse.Namespace) -> None:
  workdir = pathlib.Path(args.workdir)
  if not (workdir / METRICS_FILE).exists() and not sample_grids(workdir / SAMPLES_DIR):
    raise DataError(f"{workdir} has no {METRICS_FILE} and no samples/step_*.png; pass the "
                    "--workdir of a training run")
  for path in write_plots(workdir):
    print(path)


def main(argv: list[str] | None = None) -> int:
  return cli.run_cli(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
