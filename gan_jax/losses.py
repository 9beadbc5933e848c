"""GAN losses on discriminator logits.

Each loss is a pair of functions: `d_loss(real_logits, fake_logits)` and
`g_loss(fake_logits)`, both returning a scalar mean over the local batch.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class GANLoss(NamedTuple):
  d_loss: Callable[[jax.Array, jax.Array], jax.Array]
  g_loss: Callable[[jax.Array], jax.Array]


def ns_d_loss(real_logits, fake_logits):
  # -log sigmoid(r) - log(1 - sigmoid(f)), in the numerically stable softplus form.
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def ns_g_loss(fake_logits):
  # Non-saturating: G maximises log D(G(z)) instead of minimising log(1 - D(G(z))).
  return jnp.mean(jax.nn.softplus(-fake_logits))


LOSSES = {
    "ns": GANLoss(ns_d_loss, ns_g_loss),
}


def get_loss(name: str) -> GANLoss:
  if name not in LOSSES:
    raise ValueError(f"unknown loss.name {name!r}; choose one of {', '.join(sorted(LOSSES))}")
  return LOSSES[name]
