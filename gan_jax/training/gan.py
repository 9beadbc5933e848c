"""The GAN bundle: the code half of a GAN (the data half is `state.GANState`).

`GAN.from_config(config)` checks the config and builds the networks (by
`model.name`), both optimisers, the loss and the training techniques; the
train step (`step.py`) reads them as Python values, so an option that is off
adds nothing to the compiled program. `GAN.sampling_variables` is the one place
that picks the variables to sample with: the EMA of G's weights when the run
keeps one, with G's running batch statistics or, with
`train.ema_batch_stats=recompute`, statistics of the EMA's own (ema_stats.py).
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
from gan_jax.training import augment, ema_stats, losses, optim, regularizers
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
  # Training techniques; these defaults are plain DCGAN (gan_jax/config/defaults.py).
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
  # Regularisers for small data sets (regularizers.py); 0 = off.
  ada_target: float = 0.0           # ADA: target of E[sign(D(x) - loss.boundary)] on reals
  ada_interval: int = 4             # ADA: steps between adjustments of p
  ada_adjustment: float = 0.0       # ADA: how far p moves per adjustment
  lecam_weight: float = 0.0         # LeCam regularisation's weight
  lecam_decay: float = 0.99         # LeCam: decay of the averages of D's logits
  bcr_real: float = 0.0             # bCR: weight of the consistency on reals
  bcr_fake: float = 0.0             # bCR: ... and on fakes
  bcr_policy: tuple[str, ...] = ("translation",)  # bCR: the augmentation T
  ema_batch_stats: str = "live"     # the EMA's batch-norm statistics: live | recompute
  ema_stats_batches: int = 8        # recompute: batches of fixed latents ...
  ema_stats_batch_size: int = 128   # ... of this many latents each

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
        ada_target=config.augment.ada_target,
        ada_interval=config.augment.ada_interval,
        ada_adjustment=regularizers.ada_adjustment(train.batch_size, config.augment.ada_interval,
                                                   config.augment.ada_kimg),
        lecam_weight=loss.lecam_weight,
        lecam_decay=loss.lecam_decay,
        bcr_real=loss.bcr_real,
        bcr_fake=loss.bcr_fake,
        bcr_policy=augment.parse_policy(loss.bcr_augment),
        ema_batch_stats=train.ema_batch_stats,
        ema_stats_batches=train.ema_stats_batches,
        ema_stats_batch_size=train.ema_stats_batch_size or train.batch_size,
    )

  @property
  def regularizes_d(self) -> bool:
    """Whether LeCam or bCR adds to D's loss."""
    return bool(self.lecam_weight or self.bcr_real or self.bcr_fake)

  @property
  def global_views(self) -> bool:
    """Whether ADA or bCR draws augmentations (for the global batch)."""
    return bool(self.ada_target or self.bcr_real or self.bcr_fake)

  @property
  def regularizes(self) -> bool:
    """Whether any of ADA, LeCam and bCR is on (the step then passes them their inputs)."""
    return bool(self.ada_target or self.regularizes_d)

  def sampling_variables(self, state: GANState) -> dict:
    """G's variables to sample with: {'params': ..., 'batch_stats': ...}.

    The EMA of G's weights when the run keeps one, else G's. The EMA samples
    with G's running batch statistics (`ema_batch_stats='live'`) or with its
    own, re-estimated here on fixed latents (`'recompute'`: a few forward
    passes, so callers that sample many batches compute this once).
    """
    if state.ema_g_params is None:
      return {"params": state.g_params, "batch_stats": state.g_batch_stats}
    if self.ema_batch_stats == "live" or not jax.tree.leaves(state.g_batch_stats):
      return {"params": state.ema_g_params, "batch_stats": state.g_batch_stats}
    latents = ema_stats.stats_latents(self.ema_stats_batches, self.ema_stats_batch_size,
                                      self.latent_dim)
    return {"params": state.ema_g_params,
            "batch_stats": ema_stats.recompute(self.generator, state.ema_g_params,
                                               state.g_batch_stats, latents)}

  def sample_with(self, variables: dict, z: jax.Array) -> jax.Array:
    """Images in [-1, 1] from latents z, G in inference mode with `variables`."""
    return self.generator.apply(variables, z, train=False)

  def sample(self, state: GANState, z: jax.Array) -> jax.Array:
    """Images in [-1, 1] from latents z with the state's `sampling_variables`."""
    return self.sample_with(self.sampling_variables(state), z)
