"""The report's pictures as data URIs: sample grids, the progress GIF and the curves.

The curves are drawn by gan_jax/monitor/plots.py (the same figures as
`python -m gan_jax.plots`) into a temporary folder, so the report writes
nothing into the run's directory but the page itself.
"""

from __future__ import annotations

import base64
import mimetypes
import pathlib
import tempfile

from gan_jax.monitor import plots

# Evaluation scalars (eval/evaluator.py) per curve: key -> legend label.
FID_CURVES = {"eval/fid": "FID vs training faces", "eval/fid_heldout": "FID vs held-out faces",
              "eval/fid_floor_heldout": "floor: training vs held-out faces"}
KID_CURVES = {"eval/kid": "KID vs training faces", "eval/kid_heldout": "KID vs held-out faces",
              "eval/kid_floor_heldout": "floor: training vs held-out faces"}


def data_uri(path: pathlib.Path) -> str:
  """The file as a data: URI, so the page needs nothing beside it."""
  kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
  return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def training_curves(folder: pathlib.Path, records: list[dict],
                    diversity_fraction: float | None) -> list[pathlib.Path]:
  """Losses, D's outputs and accuracy, a VAE-GAN's terms and the samples' diversity."""
  drawn = []
  if plots.has(records, "d_loss"):
    drawn.append(plots.plot_curves(folder / "losses.png", records,
                                   {"d_loss": "discriminator loss", "g_loss": "generator loss"},
                                   "Losses (averaged over each log interval)", "loss"))
  drawn += plots.d_plots(folder, records)
  if plots.has(records, "recon_loss"):
    drawn.append(plots.plot_curves(folder / "vae.png", records,
                                   {"recon_loss": "reconstruction error in D's features",
                                    "kl": "KL(q(z|x) || N(0, I))"},
                                   "VAE-GAN: reconstruction and prior terms", "per image"))
  if plots.has(records, "collapse/diversity_ratio"):
    # The mode-collapse detector's signal, with its threshold when the config is known.
    threshold = {"mode-collapse threshold": diversity_fraction} if diversity_fraction else None
    drawn.append(plots.plot_curves(folder / "diversity.png", records,
                                   {"collapse/diversity_ratio": "samples / real faces"},
                                   "Diversity of the fixed-noise samples", "ratio to real faces",
                                   hlines=threshold))
  return drawn


def eval_curves(folder: pathlib.Path, records: list[dict]) -> list[pathlib.Path]:
  """FID and KID over steps, when the run measured them (eval.every)."""
  drawn = []
  if plots.has(records, "eval/fid"):
    drawn.append(plots.plot_curves(folder / "fid.png", records, FID_CURVES,
                                   "FID over training (lower is better)", "FID"))
  if plots.has(records, "eval/kid"):
    drawn.append(plots.plot_curves(folder / "kid.png", records, KID_CURVES,
                                   "KID over training (lower is better)", "KID"))
  return drawn


def curve_uris(records: list[dict], diversity_fraction: float | None
               ) -> tuple[dict[str, str], dict[str, str]]:
  """({name: data URI} of the training curves, {name: data URI} of FID/KID)."""
  with tempfile.TemporaryDirectory(prefix="gan_jax_report_") as folder:
    folder = pathlib.Path(folder)
    training = training_curves(folder / "training", records, diversity_fraction)
    evaluation = eval_curves(folder / "eval", records)
    return ({path.stem: data_uri(path) for path in training},
            {path.stem: data_uri(path) for path in evaluation})
