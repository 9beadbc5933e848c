"""Detectors for the ways a GAN run goes wrong, checked at log and sample time.

(a) D overpowering G: D rejects nearly every fake while the generator loss
    climbs, judged by a signal valid for the run's loss (`OVERPOWERING_SIGNALS`).
(b) Mode collapse: the fixed-noise samples become much less varied than real faces.
(c) Non-finite losses: no finite loss in a whole log interval stops the run.

Detectors see host floats that the loop already fetched (averaged metrics, the
diversity of a sample batch), so they add no device synchronisation. Every
process computes the same values, so every process reaches the same decision
to stop.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import images as image_lib
from gan_jax.errors import ConfigError, NonFiniteLossError



def check_config(monitor: ml_collections.ConfigDict) -> None:
  """Raise ConfigError for `config.monitor` values the detectors cannot use."""
  if not 0.0 <= monitor.d_fake_threshold < 1.0:
    raise ConfigError(f"monitor.d_fake_threshold={monitor.d_fake_threshold} must be in [0, 1) "
                      "(a mean D(G(z)) or share of fakes D calls real, e.g. 0.03; 0 = off)")
  if monitor.patience < 1:
    raise ConfigError(f"monitor.patience={monitor.patience} must be >= 1 (log lines in a row)")
  if monitor.diversity_fraction < 0:
    raise ConfigError(f"monitor.diversity_fraction={monitor.diversity_fraction} must be >= 0 "
                      "(e.g. 0.25; 0 = off)")


@jax.jit
def mean_pairwise_distance(images: jax.Array) -> jax.Array:
  """Mean L2 distance between distinct pairs of images (N, H, W, C), in pixel units.

  Real images are uint8 [0, 255], scaled like the generator's output to [-1, 1].
  """
  x = image_lib.to_float(images)
  x = x.reshape(images.shape[0], -1).astype(jnp.float32)
  squared = jnp.sum(x * x, axis=1)
  # |a-b|^2 = |a|^2 + |b|^2 - 2ab, in full float32: near-identical samples (the case
  # to detect) make this a small difference of large numbers, which TF32 would swamp.
  dots = jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST)
  distances = jnp.sqrt(jnp.maximum(squared[:, None] + squared[None, :] - 2.0 * dots, 0.0))
  n = x.shape[0]
  return jnp.sum(distances * (1.0 - jnp.eye(n))) / (n * (n - 1))


def real_diversity(real_images) -> float:
  """`mean_pairwise_distance` of the real faces; exactly 0 when they are all identical (the
  float32 |a|^2 + |b|^2 - 2ab can leave rounding noise there, e.g. 0.03 at 64 px)."""
  images = np.asarray(real_images)
  if (images == images[:1]).all():
    return 0.0
  return float(mean_pairwise_distance(jnp.asarray(images)))


class OverpoweringSignal(NamedTuple):
  """How much of G's output still passes D, read from one log line's metrics (0: none)."""
  description: str                            # for the start-up line and the warning
  passing: Callable[[dict[str, float]], float]


# The step's metrics per loss (training/losses.py, d_metrics). The BCE losses
# keep their historical signal, D(G(z)), a probability; LSGAN and hinge have no
# probabilities, but a decision boundary (0.5 and 0), so the share of fakes D
# classifies as real is valid for them. A Wasserstein critic has none: its
# scores are shift-invariant, and a critic trained close to optimality is what
# WGAN-GP wants (its gradients stay useful), so the detector is off for it.
_BCE = OverpoweringSignal("mean D(G(z))", lambda s: s["d_fake"])
_FOOLED = OverpoweringSignal("share of fakes D classifies as real (1 - d_fake_acc)",
                             lambda s: 1.0 - s["d_fake_acc"])
OVERPOWERING_SIGNALS = {"ns": _BCE, "minimax": _BCE, "lsgan": _FOOLED, "hinge": _FOOLED}
LABELLED_LOSSES = ("ns", "minimax", "lsgan")  # label smoothing is a remedy only for these
OFF_REASONS = {"wgan-gp": "a Wasserstein critic has no decision boundary (its scores shift "
                          "freely) and is meant to be trained close to optimality"}


class DOverpowering:
  """G's images pass D less than `threshold` for `patience` logs in a row, with g_loss
  higher than at the start of the streak.

  A GAN whose discriminator wins outright gives the generator vanishing or
  useless gradients: its fakes stop passing D (for BCE, D(G(z)) sinks to ~0)
  and g_loss keeps rising instead of oscillating. What "passing" means depends
  on the loss (`OVERPOWERING_SIGNALS`); for a loss with no signal, or
  threshold 0, the detector is off and says so in `describe`.
  """

  name = "d_overpowering"

  def __init__(self, threshold: float, patience: int, loss_name: str = "ns"):
    self.threshold, self.patience, self.loss_name = threshold, patience, loss_name
    self.signal = OVERPOWERING_SIGNALS.get(loss_name) if threshold else None
    self._streak_g_losses: list[float] = []
    self.active = False

  @property
  def enabled(self) -> bool:
    return self.signal is not None

  def describe(self) -> str:
    """One start-up line: what the detector watches, or why it is off."""
    if not self.threshold:
      return "D-overpowering detector off (monitor.d_fake_threshold=0)"
    if self.signal is None:
      reason = OFF_REASONS.get(self.loss_name, "no signal is defined for this loss")
      return (f"D-overpowering detector off for loss.name={self.loss_name}: {reason}; "
              "watch d_real_logit - d_fake_logit and the samples instead")
    return (f"D-overpowering detector: {self.signal.description} < {self.threshold} for "
            f"{self.patience} logs in a row while g_loss rises")

  def update(self, step: int, scalars: dict[str, float]) -> str | None:
    """Feed one log line; returns a warning when the condition starts to hold."""
    if self.signal is None or "g_loss" not in scalars:
      return None
    try:
      passing = self.signal.passing(scalars)
    except KeyError:  # a step that does not log this loss's metrics: nothing to judge
      return None
    if passing < self.threshold:
      self._streak_g_losses.append(scalars["g_loss"])
    else:
      self._streak_g_losses = []
    losses, was_active = self._streak_g_losses, self.active
    # It starts when g_loss has risen over the last `patience` logs and lasts while D keeps
    # rejecting the fakes: a saturated g_loss (LSGAN's stays near 0.5) does not end it.
    self.active = len(losses) >= self.patience and (
        was_active or losses[-1] > losses[-self.patience])
    if self.active and not was_active:
      smoothing = "label smoothing or " if self.loss_name in LABELLED_LOSSES else ""
      return (f"step {step}: discriminator overpowering the generator: "
              f"{self.signal.description} < {self.threshold} for {len(losses)} logs while "
              f"g_loss rose {losses[-self.patience]:.3f} -> {losses[-1]:.3f}. Try a lower "
              f"optim.d_lr or higher optim.g_lr, {smoothing}instance noise, or a smaller D "
              "(model.d_width, model.d_dropout).")
    return None


class ModeCollapse:
  """Diversity of the fixed-noise samples falls below `fraction` of the real images' diversity.

  A freshly initialised generator draws near-identical grey images, so the
  detector arms only once the samples have been diverse (ratio >= fraction);
  a run that never gets there is caught by the other signals instead.
  """

  name = "mode_collapse"

  def __init__(self, fraction: float, data_diversity: float):
    self.fraction, self.data_diversity = fraction, data_diversity
    self.armed = self.active = False
    # Identical real faces leave nothing to compare the samples with: the detector is off.
    self.enabled = data_diversity > 0

  def describe(self, num_real: int) -> str:
    """One start-up line: the real faces' diversity and the warning threshold, or why it is off."""
    if not self.enabled:
      return (f"the {num_real} real faces have no diversity (all identical), so the "
              "mode-collapse detector is off")
    return (f"diversity of {num_real} real faces: {self.data_diversity:.3f} (mode-collapse "
            f"warning below {self.fraction * self.data_diversity:.3f})")

  def ratio(self, sample_diversity: float) -> float | None:
    """The samples' diversity over the real faces' (None when the real faces have none)."""
    return sample_diversity / self.data_diversity if self.enabled else None

  def update(self, step: int, sample_diversity: float) -> str | None:
    """Feed one sample batch's diversity; returns a warning when collapse starts."""
    if not self.enabled:
      return None
    ratio = self.ratio(sample_diversity)
    self.armed = self.armed or ratio >= self.fraction
    was_active = self.active
    self.active = self.armed and ratio < self.fraction
    if self.active and not was_active:
      return (f"step {step}: mode collapse: fixed-noise samples are {ratio:.2f} times as "
              f"diverse as real faces (threshold {self.fraction}). Try an earlier "
              "checkpoint, a lower optim.g_lr, D's minibatch-std channel "
              "(--config.model.d_minibatch_std=True) or more D capacity, or fewer training "
              "steps.")
    return None


def check_finite(step: int, scalars: dict[str, float], names=("d_loss", "g_loss")) -> None:
  """Raise NonFiniteLossError naming the non-finite losses and what to try."""
  bad = [name for name in names if name in scalars and not math.isfinite(scalars[name])]
  if bad:
    values = ", ".join(f"{name}={scalars[name]}" for name in bad)
    raise NonFiniteLossError(
        f"training diverged at step {step}: {values} (no finite loss since the last log). "
        "Try lower learning rates (--config.optim.g_lr / --config.optim.d_lr), "
        "--config.train.dtype=float32 if "
        "training in bfloat16, or a gradient penalty; restart from the last checkpoint.")
