"""The GAN bundle: the code half of a GAN (the data half is `state.GANState`).

`GAN.from_config(config)` builds the networks (by `model.name`), both
optimisers, the loss and the training techniques the config turns on, from a
config the start-up checks passed (config/checks.py); the train step
(`step.py`) reads them as Python values, so an option that is off adds nothing
to the compiled program. `GAN.sampling_variables` is the one place
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

from gan_jax.parallel import BATCH_AXIS
from gan_jax.training import ema_stats, losses, optim, techniques
from gan_jax.training.state import GANState
from gan_jax.training.techniques import Technique


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
  model_name: str = "dcgan"    # its family (training/family.py)
  g_lr_schedule: optax.Schedule | None = None  # lr by iteration; None: the optimiser's own
  d_lr_schedule: optax.Schedule | None = None
  d_steps: int = 1
  g_steps: int = 1
  # The training techniques the config turns on, in the step's order (techniques/).
  techniques: tuple[Technique, ...] = ()
  ema_decay: float = 0.0            # EMA of G's params (0 = off)
  ema_rampup: bool = False
  ema_batch_stats: str = "live"     # the EMA's batch-norm statistics: live | recompute
  ema_stats_batches: int = 8        # recompute: batches of fixed latents ...
  ema_stats_batch_size: int = 128   # ... of this many latents each

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, networks) -> "GAN":
    """The bundle `config` describes; `networks` is its family's models module."""
    generator, discriminator = networks.build(config, axis_name=BATCH_AXIS)
    g_optimizer, d_optimizer, g_lr_schedule, d_lr_schedule = optim.make_optimizers(config)
    train = config.train
    return cls(
        generator=generator,
        discriminator=discriminator,
        g_optimizer=g_optimizer,
        d_optimizer=d_optimizer,
        loss=losses.get_loss(config.loss.name),
        latent_dim=config.model.latent_dim,
        resolution=config.data.resolution,
        model_name=config.model.name,
        g_lr_schedule=g_lr_schedule,
        d_lr_schedule=d_lr_schedule,
        d_steps=train.d_steps,
        g_steps=train.g_steps,
        techniques=techniques.build(config),
        ema_decay=train.ema_decay,
        ema_rampup=train.ema_rampup,
        ema_batch_stats=train.ema_batch_stats,
        ema_stats_batches=train.ema_stats_batches,
        ema_stats_batch_size=train.ema_stats_batch_size or train.batch_size,
    )

  def sampling_fields(self, state: GANState) -> dict:
    """{field name: value} of the state fields `sampling_variables` reads: G's weights or
    their EMA when the run keeps one, and G's batch statistics."""
    weights = "g_params" if state.ema_g_params is None else "ema_g_params"
    return {weights: getattr(state, weights), "g_batch_stats": state.g_batch_stats}

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
