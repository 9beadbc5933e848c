"""The GAN bundle: the code half of a GAN (the data half is `state.GANState`).

`GAN.from_config(config)` checks the config and builds the networks (by
`model.name`), both optimisers, the loss and the training techniques; the
train step (`step.py`) reads them as Python values, so an option that is off
adds nothing to the compiled program. `GAN.sample` is the one place that picks
the weights to sample with (the EMA of G's weights when the run keeps one).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import ml_collections
import optax

from gan_jax import models
from gan_jax.config.checks import validate_config
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training import augment, losses, optim
from gan_jax.training.state import GANState


@dataclasses.dataclass(frozen=True)
class GAN:
  """The code half of a GAN: models, optimisers and loss (the data half is GANState)."""
  generator: nn.Module         # z -> images in [-1, 1]
  discriminator: nn.Module     # images -> one logit per image
  g_optimizer: optax.GradientTransformation
  d_optimizer: optax.GradientTransformation
  loss: losses.GANLoss
  latent_dim: int
  resolution: int
  # Training techniques; these defaults are plain DCGAN (configs/default.py).
  g_lr_schedule: optax.Schedule | None = None  # lr by iteration; None: the optimiser's own
  d_lr_schedule: optax.Schedule | None = None
  d_steps: int = 1
  g_steps: int = 1
  real_label: float = 1.0           # D's target for reals (< 1: one-sided smoothing)
  flip_prob: float = 0.0            # probability of flipping each D label
  gp_weight: float = 0.0            # WGAN-GP gradient penalty (0 = off)
  r1_gamma: float = 0.0             # R1 penalty on reals (0 = off)
  r1_every: int = 1                 # lazy R1 interval
  augment_policy: tuple[str, ...] = ()  # DiffAugment operations on D's inputs
  instance_noise: float = 0.0       # initial std of the noise on D's inputs
  instance_noise_steps: int = 1     # steps over which it anneals to 0
  balance_margin: float = 0.0       # > 0: train only the weaker net when losses differ this much
  ema_decay: float = 0.0            # EMA of G's params (0 = off)
  ema_rampup: bool = False

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "GAN":
    validate_config(config)
    generator, discriminator = models.build(config, axis_name=BATCH_AXIS)
    g_optimizer, d_optimizer, g_lr_schedule, d_lr_schedule = optim.make_optimizers(config)
    loss, train = config.loss, config.train
    return cls(
        generator=generator,
        discriminator=discriminator,
        g_optimizer=g_optimizer,
        d_optimizer=d_optimizer,
        loss=losses.get_loss(loss.name),
        latent_dim=config.model.latent_dim,
        resolution=config.data.resolution,
        g_lr_schedule=g_lr_schedule,
        d_lr_schedule=d_lr_schedule,
        d_steps=train.d_steps,
        g_steps=train.g_steps,
        real_label=loss.real_label,
        flip_prob=loss.flip_prob,
        gp_weight=loss.gp_weight if loss.name == "wgan-gp" else 0.0,
        r1_gamma=loss.r1_gamma,
        r1_every=loss.r1_every,
        augment_policy=augment.parse_policy(config.augment.policy),
        instance_noise=train.instance_noise,
        instance_noise_steps=train.instance_noise_steps or train.num_steps,
        balance_margin=train.balance_margin,
        ema_decay=train.ema_decay,
        ema_rampup=train.ema_rampup,
    )

  def sample(self, state: GANState, z: jax.Array) -> jax.Array:
    """Images in [-1, 1] from latents z, with G in inference mode (running batch stats)."""
    params = state.ema_g_params if state.ema_g_params is not None else state.g_params
    return self.generator.apply({"params": params, "batch_stats": state.g_batch_stats}, z,
                                train=False)
