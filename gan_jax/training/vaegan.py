"""The VAE-GAN's bundle and state (Larsen et al. 2016; models/vaegan.py has the networks).

`VAEGAN` is the GAN bundle plus the encoder, its optimiser and the two loss
weights; `VAEGANState` is `GANState` plus the encoder's params, batch
statistics and optimiser state. Sampling (`GAN.sample`: the decoder, with its
EMA weights when the run keeps them) is the GAN's; `encode` and `reconstruct`
are the encoder's additions. The step is `vaegan_step.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from gan_jax import streams
from gan_jax.models import vaegan as vaegan_models
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training.gan import GAN
from gan_jax.training.state import GANState, create_state as create_gan_state

PyTree = Any
# The state fields only a VAE-GAN has: a checkpoint with them is a VAE-GAN's.
ENCODER_FIELDS = ("e_params", "e_batch_stats", "e_opt_state")


@flax.struct.dataclass
class VAEGANState(GANState):
  """GANState's fields, then the encoder's."""
  e_params: PyTree
  e_batch_stats: PyTree
  e_opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class VAEGAN(GAN):
  """The GAN bundle plus the encoder E(x) -> (mean, log-variance) and its training.

  E trains on kl_weight * KL(q(z|x) || N(0, I)) + the reconstruction error in
  D's feature layer; G (the decoder) on recon_weight * that error + its GAN
  loss on reconstructions and prior samples; D on the GAN loss of reals,
  reconstructions and prior samples. E's learning rate is G's (optim.g_lr).
  """
  encoder: nn.Module | None = None
  e_optimizer: optax.GradientTransformation | None = None
  e_lr_schedule: optax.Schedule | None = None
  kl_weight: float = 1.0
  recon_weight: float = 1.0
  feature_block: int = 2    # D's k-th last conv block holds the features compared

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, networks=vaegan_models) -> "VAEGAN":
    gan = GAN.from_config(config, networks)
    return cls(**{f.name: getattr(gan, f.name) for f in dataclasses.fields(GAN)},
               encoder=networks.build_encoder(config, axis_name=BATCH_AXIS),
               e_optimizer=gan.g_optimizer, e_lr_schedule=gan.g_lr_schedule,
               kl_weight=config.loss.kl_weight, recon_weight=config.loss.recon_weight,
               feature_block=config.model.feature_block)

  def encode(self, state: VAEGANState, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean, log-variance) of q(z|x) for images in [-1, 1], E in inference mode."""
    return self.encoder.apply({"params": state.e_params, "batch_stats": state.e_batch_stats},
                              images, train=False)

  def reconstruct(self, state: VAEGANState, images: jax.Array) -> jax.Array:
    """G(mean of q(z|x)): the reconstruction of images in [-1, 1], with the sampling weights."""
    return self.sample(state, self.encode(state, images)[0])


def create_state(gan: VAEGAN, key: jax.Array) -> VAEGANState:
  """G, D and the run key as `state.create_state` makes them from `key`; E from its own stream."""
  state = create_gan_state(gan, key)
  x = jnp.zeros((1, gan.resolution, gan.resolution, 3), jnp.float32)
  e_vars = gan.encoder.init(streams.encoder_init_key(key), x, train=False)
  return VAEGANState(**{f.name: getattr(state, f.name) for f in dataclasses.fields(GANState)},
                     e_params=e_vars["params"], e_batch_stats=e_vars.get("batch_stats", {}),
                     e_opt_state=gan.e_optimizer.init(e_vars["params"]))
