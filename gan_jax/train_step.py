"""One GAN training iteration as a pure per-device function.

`train_step(state, batch, key) -> (state, metrics)` does one discriminator
update, then one generator update (more with train.d_steps / train.g_steps). It
runs under a mapped axis named 'batch' (shard_map, pmap, or a 1-device mesh);
gradients, losses and batch-norm statistics are averaged over that axis, so
every device ends the step with the same state.

The training techniques (docs/options.md) are fields of `GAN`, read here as
Python values: an option that is off adds nothing to the compiled step.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax import lax

from gan_jax import augment, losses, optim
from gan_jax.config_checks import validate_config
from gan_jax.models import Discriminator, Generator, build_models
from gan_jax.models.dcgan import BATCH_AXIS
from gan_jax.state import GANState


@dataclasses.dataclass(frozen=True)
class GAN:
  """The code half of a GAN: models, optimisers and loss (the data half is GANState)."""
  generator: Generator
  discriminator: Discriminator
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
    generator, discriminator = build_models(config)
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


def to_float_images(batch: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1]; float batches are taken as already scaled."""
  if batch.dtype == jnp.uint8:
    return batch.astype(jnp.float32) / 127.5 - 1.0
  return batch.astype(jnp.float32)


def global_latents(step_key: jax.Array, local_batch: int, latent_dim: int) -> jax.Array:
  """This device's rows of the step's latent batch, drawn for the global batch.

  Drawing z for the whole global batch and slicing it makes a run independent
  of the device count: 1 device and 8 devices see the same latents.
  """
  num_devices, index = lax.axis_size(BATCH_AXIS), lax.axis_index(BATCH_AXIS)
  z = jax.random.normal(step_key, (num_devices * local_batch, latent_dim), jnp.float32)
  return lax.dynamic_slice_in_dim(z, index * local_batch, local_batch)


def all_finite(tree) -> jax.Array:
  """Whether every element of every leaf is finite (no NaN/Inf)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def keep_if(condition: jax.Array, new, old):
  """`new` where `condition` holds, else `old`, leaf by leaf: an update that can be
  switched off inside the compiled step, with no round trip to the host."""
  return jax.tree.map(lambda n, o: jnp.where(condition, n, o), new, old)


def balance_updates(d_loss: jax.Array, g_loss: jax.Array, margin: float
                    ) -> tuple[jax.Array, jax.Array]:
  """(train D?, train G?) by seed 004's rule: when the losses differ by at least
  `margin`, train only the weaker network (the higher loss); otherwise both."""
  if not margin:
    return jnp.array(True), jnp.array(True)
  close = jnp.abs(g_loss - d_loss) < margin
  return close | (d_loss > g_loss), close | (g_loss > d_loss)


def ema_update(ema_params, params, decay):
  """One step of the exponential moving average: decay * ema + (1 - decay) * params."""
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def ema_decay_at(gan: GAN, step: jax.Array) -> jax.Array:
  """The EMA decay at `step`; with ramp-up (StyleGAN) early steps average less."""
  if gan.ema_rampup:
    return jnp.minimum(gan.ema_decay, (1.0 + step) / (10.0 + step))
  return jnp.asarray(gan.ema_decay, jnp.float32)


def instance_noise_std(gan: GAN, step: jax.Array) -> jax.Array:
  """Instance-noise std, annealed linearly from gan.instance_noise to 0."""
  return gan.instance_noise * jnp.maximum(0.0, 1.0 - step / gan.instance_noise_steps)


def guarded_update(optimizer: optax.GradientTransformation, schedule, step: jax.Array,
                   allowed: jax.Array, grads, params, opt_state, batch_stats, new_batch_stats):
  """One optimiser update, applied only if `allowed` and every gradient is finite.

  Otherwise params, optimiser state and batch statistics keep their old values.
  Returns (params, opt_state, batch_stats), applied and skipped-as-non-finite
  (float 0/1 each).
  """
  finite = all_finite(grads)
  if schedule is not None:  # the learning rate follows the training iteration
    opt_state_now = optim.set_learning_rate(opt_state, schedule(step))
  else:
    opt_state_now = opt_state
  updates, new_opt_state = optimizer.update(grads, opt_state_now, params)
  new_params = optax.apply_updates(params, updates)
  applied = allowed & finite
  kept = keep_if(applied, (new_params, new_opt_state, new_batch_stats),
                 (params, opt_state, batch_stats))
  return kept, applied.astype(jnp.float32), (allowed & ~finite).astype(jnp.float32)


def train_step(gan: GAN, state: GANState, batch: jax.Array, key: jax.Array
               ) -> tuple[GANState, dict[str, jax.Array]]:
  """`gan.d_steps` D updates, then `gan.g_steps` G updates, on this device's share of the batch.

  A network's update is skipped (its params, optimiser state and batch
  statistics stay as they were) when the balance rule rests it, or when its
  device-averaged gradients are not finite; the metrics count both.
  """
  step_key = jax.random.fold_in(key, state.step)
  real = to_float_images(batch)
  # Other randomness differs per device: fold in the device index.
  key = jax.random.fold_in(step_key, lax.axis_index(BATCH_AXIS))
  d_key, g_key = jax.random.split(key, 2)
  G, D = gan.generator, gan.discriminator
  noise_std = instance_noise_std(gan, state.step)

  def latents(index):
    # Latents 0 serve the first D and G updates; later updates draw their own.
    return global_latents(jax.random.fold_in(step_key, index) if index else step_key,
                          real.shape[0], gan.latent_dim)

  def generate(g_params, g_batch_stats, z):
    fake, updates = G.apply({"params": g_params, "batch_stats": g_batch_stats}, z,
                            train=True, mutable=["batch_stats"])
    return fake, updates.get("batch_stats", {})

  def d_view(images, key):
    """The images as D sees them: augmented (DiffAugment) and with instance noise."""
    augment_key, noise_key = jax.random.split(key)
    if gan.augment_policy:
      images = augment.augment(images, augment_key, gan.augment_policy)
    if gan.instance_noise:
      images = images + noise_std * jax.random.normal(noise_key, images.shape)
    return images

  def discriminate(d_params, d_batch_stats, images, dropout_key):
    logits, updates = D.apply({"params": d_params, "batch_stats": d_batch_stats}, images,
                              train=True, mutable=["batch_stats"], rngs={"dropout": dropout_key})
    return logits, updates.get("batch_stats", {})

  def d_penalty(d_params, d_batch_stats, real_in, fake_in, key):
    """Gradient penalties on D's inputs (their forwards' statistics are discarded)."""
    gp_key, dropout_key = jax.random.split(key)

    def critic(images):
      return discriminate(d_params, d_batch_stats, images, dropout_key)[0]

    penalty = jnp.zeros((), jnp.float32)
    if gan.gp_weight:
      penalty += gan.gp_weight * losses.gradient_penalty(critic, real_in, fake_in, gp_key)
    if gan.r1_gamma:
      # Lazy R1 (StyleGAN2): every r1_every steps, scaled by r1_every to keep its weight.
      def r1():
        return 0.5 * gan.r1_gamma * gan.r1_every * losses.r1_penalty(critic, real_in)
      penalty += r1() if gan.r1_every == 1 else lax.cond(
          state.step % gan.r1_every == 0, r1, lambda: jnp.zeros((), jnp.float32))
    return penalty

  # --- discriminator updates ---
  def d_loss_fn(d_params, d_batch_stats, fake, key):
    real_view, fake_view, real_drop, fake_drop, label_key, penalty_key = jax.random.split(key, 6)
    real_in, fake_in = d_view(real, real_view), d_view(fake, fake_view)
    real_logits, d_stats = discriminate(d_params, d_batch_stats, real_in, real_drop)
    fake_logits, d_stats = discriminate(d_params, d_stats, fake_in, fake_drop)
    targets = (losses.label_targets(label_key, real.shape[0], gan.real_label, gan.flip_prob)
               if gan.flip_prob else (gan.real_label, 0.0))
    d_loss = gan.loss.d_loss(real_logits, fake_logits, *targets)
    penalty = (d_penalty(d_params, d_stats, real_in, fake_in, penalty_key)
               if gan.gp_weight or gan.r1_gamma else jnp.zeros((), jnp.float32))
    return d_loss + penalty, (d_stats, d_loss, penalty, real_logits, fake_logits)

  # One G forward serves the first D and the first G update: the D step reads
  # `fake`, the G step pulls D's gradient back through `g_pullback`.
  fake, g_pullback, g_batch_stats = jax.vjp(
      lambda g_params: generate(g_params, state.g_batch_stats, latents(0)), state.g_params,
      has_aux=True)

  d_params, d_batch_stats, d_opt_state = state.d_params, state.d_batch_stats, state.d_opt_state
  d_updates = d_skipped = jnp.zeros((), jnp.float32)
  for i in range(gan.d_steps):
    # Later D updates see fresh fakes from the same G (their G statistics are not kept).
    d_fake = fake if i == 0 else generate(state.g_params, g_batch_stats, latents(i))[0]
    (_, (new_d_stats, loss, penalty, real_logits, fake_logits)), grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(d_params, d_batch_stats, lax.stop_gradient(d_fake),
                                 jax.random.fold_in(d_key, i))
    grads = lax.pmean(grads, BATCH_AXIS)
    if i == 0:
      # Balancing compares both losses on this batch, before either network moves.
      d_loss, g_loss_before = lax.pmean((loss, gan.loss.g_loss(fake_logits)), BATCH_AXIS)
      train_d, train_g = balance_updates(d_loss, g_loss_before, gan.balance_margin)
      metrics = {
          "d_loss": d_loss,
          "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
          "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
          # Norm of the device-averaged gradients of the first D update.
          "d_grad_norm": optax.global_norm(grads),
      }
      if gan.gp_weight or gan.r1_gamma:
        metrics["d_penalty"] = penalty
    (d_params, d_opt_state, d_batch_stats), applied, skipped = guarded_update(
        gan.d_optimizer, gan.d_lr_schedule, state.step, train_d, grads,
        d_params, d_opt_state, d_batch_stats, new_d_stats)
    d_updates, d_skipped = d_updates + applied, d_skipped + skipped

  # --- generator updates, against the updated discriminator ---
  def g_loss_fn(fake_images, d_batch_stats, key):
    view_key, dropout_key = jax.random.split(key)
    logits, d_stats = discriminate(d_params, d_batch_stats, d_view(fake_images, view_key),
                                   dropout_key)
    return gan.loss.g_loss(logits), d_stats

  def g_loss_from_params(g_params, g_batch_stats, z, d_batch_stats, key):
    fake, g_stats = generate(g_params, g_batch_stats, z)
    loss, d_stats = g_loss_fn(fake, d_batch_stats, key)
    return loss, (g_stats, d_stats)

  g_params, g_opt_state, g_stats = state.g_params, state.g_opt_state, state.g_batch_stats
  g_updates = g_skipped = jnp.zeros((), jnp.float32)
  for j in range(gan.g_steps):
    j_key = jax.random.fold_in(g_key, j)
    if j == 0:
      (loss, new_d_stats), fake_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
          fake, d_batch_stats, j_key)
      (grads,) = g_pullback(fake_grads)
      new_g_stats = g_batch_stats
    else:
      (loss, (new_g_stats, new_d_stats)), grads = jax.value_and_grad(
          g_loss_from_params, has_aux=True)(g_params, g_stats, latents(gan.d_steps + j),
                                            d_batch_stats, j_key)
    grads = lax.pmean(grads, BATCH_AXIS)
    if j == 0:
      metrics.update(g_loss=loss, g_grad_norm=optax.global_norm(grads))
    (g_params, g_opt_state, g_stats), applied, skipped = guarded_update(
        gan.g_optimizer, gan.g_lr_schedule, state.step, train_g, grads,
        g_params, g_opt_state, g_stats, new_g_stats)
    g_updates, g_skipped = g_updates + applied, g_skipped + skipped
    # D's running statistics move with the G step's forward only while D trains.
    d_batch_stats = keep_if(train_d, new_d_stats, d_batch_stats)

  ema_g_params = state.ema_g_params
  if gan.ema_decay:
    ema_g_params = ema_update(ema_g_params, g_params, ema_decay_at(gan, state.step))

  new_state = state.replace(
      step=state.step + 1,
      g_params=g_params, g_batch_stats=g_stats, g_opt_state=g_opt_state,
      d_params=d_params, d_batch_stats=d_batch_stats, d_opt_state=d_opt_state,
      ema_g_params=ema_g_params)
  # Updates applied, and updates skipped for non-finite gradients, this iteration.
  metrics.update(d_updates=d_updates, g_updates=g_updates, d_skipped=d_skipped,
                 g_skipped=g_skipped)
  return new_state, lax.pmean(metrics, BATCH_AXIS)


def make_train_step(gan: GAN):
  """`train_step` with the GAN bound: the (state, batch, key) function to map."""
  return functools.partial(train_step, gan)
