"""Detectors for the ways a GAN run goes wrong, checked at log and sample time.

(a) D overpowering G: D(G(z)) stays near 0 while the generator loss climbs.
(b) Mode collapse: the fixed-noise samples become much less varied than real faces.
(c) Non-finite losses: no finite loss in a whole log interval stops the run.

Detectors see host floats that the loop already fetched (averaged metrics, the
diversity of a sample batch), so they add no device synchronisation. Every
process computes the same values, so every process reaches the same decision
to stop.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from gan_jax import images as image_lib
from gan_jax.errors import ConfigError, NonFiniteLossError



def check_config(monitor: ml_collections.ConfigDict) -> None:
  """Raise ConfigError for `config.monitor` values the detectors cannot use."""
  if not 0.0 <= monitor.d_fake_threshold < 1.0:
    raise ConfigError(f"monitor.d_fake_threshold={monitor.d_fake_threshold} must be in [0, 1) "
                      "(a mean D(G(z)), e.g. 0.03; 0 = off)")
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


class DOverpowering:
  """D(G(z)) below `threshold` for `patience` logs in a row, with g_loss higher than at the start.

  A GAN whose discriminator wins outright gives the generator vanishing
  gradients: d_fake sinks to ~0 and g_loss keeps rising instead of oscillating.
  """

  name = "d_overpowering"

  def __init__(self, threshold: float, patience: int):
    self.threshold, self.patience = threshold, patience
    self._streak_g_losses: list[float] = []
    self.active = False

  def update(self, step: int, scalars: dict[str, float]) -> str | None:
    """Feed one log line; returns a warning when the condition starts to hold."""
    if scalars["d_fake"] < self.threshold:
      self._streak_g_losses.append(scalars["g_loss"])
    else:
      self._streak_g_losses = []
    losses = self._streak_g_losses
    was_active = self.active
    self.active = len(losses) >= self.patience and losses[-1] > losses[-self.patience]
    if self.active and not was_active:
      return (f"step {step}: discriminator overpowering the generator: d_fake < "
              f"{self.threshold} for {len(losses)} logs while g_loss rose "
              f"{losses[-self.patience]:.3f} -> {losses[-1]:.3f}. Try a lower optim.d_lr or "
              "higher optim.g_lr, label smoothing or instance noise, or a smaller D "
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

  def ratio(self, sample_diversity: float) -> float:
    return sample_diversity / self.data_diversity

  def update(self, step: int, sample_diversity: float) -> str | None:
    """Feed one sample batch's diversity; returns a warning when collapse starts."""
    ratio = self.ratio(sample_diversity)
    self.armed = self.armed or ratio >= self.fraction
    was_active = self.active
    self.active = self.armed and ratio < self.fraction
    if self.active and not was_active:
      return (f"step {step}: mode collapse: fixed-noise samples are {ratio:.2f} times as "
              f"diverse as real faces (threshold {self.fraction}). Try an earlier "
              "checkpoint, a lower optim.g_lr, minibatch-std / more D capacity, or "
              "fewer training steps.")
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
