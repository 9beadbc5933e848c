"""GAN losses on discriminator logits, and the penalties that regularise D.

Each loss is a pair of functions: `d_loss(real_logits, fake_logits, real_target,
fake_target)` and `g_loss(fake_logits)`, both returning a scalar mean over the
local batch. The targets (1 for real, 0 for fake unless smoothed or flipped)
are only read by the losses that have `label_targets`; hinge and Wasserstein
losses have no labels to smooth.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class GANLoss(NamedTuple):
  d_loss: Callable[..., jax.Array]
  g_loss: Callable[[jax.Array], jax.Array]
  label_targets: bool = True   # whether d_loss reads the real/fake targets


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


LOSSES = {
    "ns": GANLoss(ns_d_loss, ns_g_loss),
    "minimax": GANLoss(ns_d_loss, minimax_g_loss),
    "lsgan": GANLoss(lsgan_d_loss, lsgan_g_loss),
    "hinge": GANLoss(hinge_d_loss, critic_g_loss, label_targets=False),
    # The gradient penalty is added by the train step (it needs D itself).
    "wgan-gp": GANLoss(wasserstein_d_loss, critic_g_loss, label_targets=False),
}


def get_loss(name: str) -> GANLoss:
  if name not in LOSSES:
    raise ValueError(f"unknown loss.name {name!r}; choose one of {', '.join(sorted(LOSSES))}")
  return LOSSES[name]


def label_targets(key: jax.Array, batch_size: int, real_label: float = 1.0,
                  flip_prob: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """Per-example D targets (real, fake): real_label and 0, each flipped with prob. flip_prob.

  One-sided smoothing (real_label < 1) softens only the real target, so D is
  not pushed to output 0 on fakes less hard. A flipped real example is labelled
  fake (0) and a flipped fake one real (real_label): seed 001's "swap labels".
  """
  real_flip, fake_flip = jax.random.bernoulli(key, flip_prob, (2, batch_size))
  real_target = jnp.where(real_flip, 0.0, real_label)
  fake_target = jnp.where(fake_flip, real_label, 0.0)
  return real_target, fake_target


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
