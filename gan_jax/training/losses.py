"""GAN losses on discriminator logits, and the penalties that regularise D.

Each loss is a pair of functions: `d_loss(real_logits, fake_logits, real_target,
fake_target)` and `g_loss(fake_logits)`, both returning a scalar mean over the
local batch. The targets (1 for real, 0 for fake unless smoothed or flipped)
are only read by the losses that have `label_targets`; hinge and Wasserstein
losses have no labels to smooth.

Each loss also says what D's logits mean (`d_metrics`): the BCE losses log
D(x) and D(G(z)) as probabilities (`d_real`, `d_fake`); the others log D's raw
mean outputs (`d_real_logit`, `d_fake_logit`), which are not probabilities.
Every loss logs the share of real and fake images D classifies correctly by
its own decision boundary (`d_real_acc`, `d_fake_acc`; docs/options.md). The
boundary is the loss's `boundary` (`*_BOUNDARY` below), which ADA's overfitting
measure reads too; a Wasserstein critic has none (its accuracies use the
batch's midpoint, and ADA is refused with it).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax


class GANLoss(NamedTuple):
  d_loss: Callable[..., jax.Array]
  g_loss: Callable[[jax.Array], jax.Array]
  # (real_logits, fake_logits, axis_name=None) -> the step's metrics of D's outputs.
  d_metrics: Callable[..., dict[str, jax.Array]]
  label_targets: bool = True   # whether d_loss reads the real/fake targets
  # D's decision boundary on its outputs: above it D calls an image real. None: the
  # outputs have no absolute one (a critic's scores shift freely).
  boundary: float | None = 0.0


def bce_d_loss(real_logits, fake_logits, real_target=1.0, fake_target=0.0):
  """Binary cross-entropy of D against its targets (the original GAN's D loss)."""
  real_target = jnp.broadcast_to(real_target, real_logits.shape)
  fake_target = jnp.broadcast_to(fake_target, fake_logits.shape)
  return (jnp.mean(optax.sigmoid_binary_cross_entropy(real_logits, real_target)) +
          jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, fake_target)))


def ns_d_loss(real_logits, fake_logits, real_target=1.0, fake_target=0.0):
  # -log sigmoid(r) - log(1 - sigmoid(f)) for the default targets.
  return bce_d_loss(real_logits, fake_logits, real_target, fake_target)


def ns_g_loss(fake_logits):
  # Non-saturating: G maximises log D(G(z)) instead of minimising log(1 - D(G(z))).
  return jnp.mean(jax.nn.softplus(-fake_logits))


def minimax_g_loss(fake_logits):
  # The saturating original: G minimises log(1 - D(G(z))) = -softplus(f).
  return -jnp.mean(jax.nn.softplus(fake_logits))


def lsgan_d_loss(real_logits, fake_logits, real_target=1.0, fake_target=0.0):
  # Least squares (Mao et al. 2017, a=0, b=c=1): D regresses its targets.
  return 0.5 * (jnp.mean((real_logits - real_target) ** 2) +
                jnp.mean((fake_logits - fake_target) ** 2))


def lsgan_g_loss(fake_logits):
  return 0.5 * jnp.mean((fake_logits - 1.0) ** 2)


def hinge_d_loss(real_logits, fake_logits, real_target=None, fake_target=None):
  del real_target, fake_target  # no labels in a margin loss
  return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def wasserstein_d_loss(real_logits, fake_logits, real_target=None, fake_target=None):
  del real_target, fake_target  # a critic has scores, not labels
  return jnp.mean(fake_logits) - jnp.mean(real_logits)


def critic_g_loss(fake_logits):
  # Hinge and WGAN G both raise the critic's score of fakes.
  return -jnp.mean(fake_logits)


# --- what D's outputs say, per loss (the step's metrics) ---

BCE_BOUNDARY = 0.0    # logit 0: probability 1/2
LSGAN_BOUNDARY = 0.5  # halfway between the fake target 0 and G's target 1
HINGE_BOUNDARY = 0.0  # the middle of the margins [-1, 1]

def _share(correct: jax.Array) -> jax.Array:
  return jnp.mean(correct.astype(jnp.float32))


def accuracies(real_logits, fake_logits, boundary) -> dict[str, jax.Array]:
  """Share of real outputs above `boundary` (called real) and of fake outputs not above it."""
  return {"d_real_acc": _share(real_logits > boundary),
          "d_fake_acc": _share(~(fake_logits > boundary))}


def bce_d_metrics(real_logits, fake_logits, axis_name=None) -> dict[str, jax.Array]:
  """D(x), D(G(z)) (mean probability of 'real') and accuracies at logit 0 (probability 1/2)."""
  del axis_name  # the boundary is absolute
  return {"d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
          "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
          **accuracies(real_logits, fake_logits, BCE_BOUNDARY)}


def raw_outputs(real_logits, fake_logits) -> dict[str, jax.Array]:
  return {"d_real_logit": jnp.mean(real_logits), "d_fake_logit": jnp.mean(fake_logits)}


def lsgan_d_metrics(real_logits, fake_logits, axis_name=None) -> dict[str, jax.Array]:
  """Mean outputs and accuracies at 0.5, halfway between the fake target 0 and G's target 1.

  With label smoothing D's real target is lower, but 0.5 stays the boundary:
  the metric does not change meaning with loss.real_label.
  """
  del axis_name
  return {**raw_outputs(real_logits, fake_logits),
          **accuracies(real_logits, fake_logits, LSGAN_BOUNDARY)}


def hinge_d_metrics(real_logits, fake_logits, axis_name=None) -> dict[str, jax.Array]:
  """Mean outputs and accuracies at 0, the middle of the margins [-1, 1]."""
  del axis_name
  return {**raw_outputs(real_logits, fake_logits),
          **accuracies(real_logits, fake_logits, HINGE_BOUNDARY)}


def wasserstein_d_metrics(real_logits, fake_logits, axis_name=None) -> dict[str, jax.Array]:
  """Mean scores and accuracies at the batch's midpoint between the mean real and fake score.

  A critic's scores have no absolute boundary (adding a constant changes
  neither its loss nor its penalty), so these accuracies measure only how well
  the scores separate: about 0.5 when real and fake scores overlap, 1 when
  every real score lies above the midpoint and every fake one below it. The
  midpoint is that of the global batch (averaged over `axis_name`), so the
  device count does not change it.
  """
  means = raw_outputs(real_logits, fake_logits)
  if axis_name is not None:
    means = lax.pmean(means, axis_name)
  midpoint = 0.5 * (means["d_real_logit"] + means["d_fake_logit"])
  return {**raw_outputs(real_logits, fake_logits), **accuracies(real_logits, fake_logits, midpoint)}


LOSSES = {
    "ns": GANLoss(ns_d_loss, ns_g_loss, bce_d_metrics, boundary=BCE_BOUNDARY),
    "minimax": GANLoss(ns_d_loss, minimax_g_loss, bce_d_metrics, boundary=BCE_BOUNDARY),
    "lsgan": GANLoss(lsgan_d_loss, lsgan_g_loss, lsgan_d_metrics, boundary=LSGAN_BOUNDARY),
    "hinge": GANLoss(hinge_d_loss, critic_g_loss, hinge_d_metrics, label_targets=False,
                     boundary=HINGE_BOUNDARY),
    # The gradient penalty is added by the train step (it needs D itself).
    "wgan-gp": GANLoss(wasserstein_d_loss, critic_g_loss, wasserstein_d_metrics,
                       label_targets=False, boundary=None),
}


def get_loss(name: str) -> GANLoss:
  if name not in LOSSES:
    raise ValueError(f"unknown loss.name {name!r}; choose one of {', '.join(sorted(LOSSES))}")
  return LOSSES[name]


def _per_example_grad_sq_norm(critic: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  # Summing the logits gives every example's own input gradient in one backward
  # pass, as long as D treats examples independently (no batch norm).
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(x)
  return jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=tuple(range(1, x.ndim)))


def gradient_penalty(critic: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array,
                     key: jax.Array) -> jax.Array:
  """WGAN-GP (Gulrajani et al. 2017): mean (||grad_x critic(x)|| - 1)^2 at random interpolates."""
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1))
  between = eps * real + (1.0 - eps) * fake
  # The tiny constant keeps the norm's gradient finite where the gradient is 0.
  norms = jnp.sqrt(_per_example_grad_sq_norm(critic, between) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))


def r1_penalty(critic: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
  """R1 (Mescheder et al. 2018) without its gamma/2: mean ||grad_x D(x)||^2 on real images."""
  return jnp.mean(_per_example_grad_sq_norm(critic, real))
