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

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from gan_jax import images as image_lib
from gan_jax.training import augment
from gan_jax.training import losses
from gan_jax.training import optim
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training.gan import GAN
from gan_jax.training.state import GANState


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


class NetState(NamedTuple):
  """One network's trained variables, as carried through the step's updates."""
  params: Any
  opt_state: optax.OptState
  batch_stats: Any


def guarded_update(optimizer: optax.GradientTransformation, schedule, step: jax.Array,
                   allowed: jax.Array, grads, net: NetState, new_batch_stats
                   ) -> tuple[NetState, jax.Array, jax.Array]:
  """One optimiser update, applied only if `allowed` and every gradient is finite.

  Otherwise the network keeps its params, optimiser state and batch statistics.
  Returns the network, and whether the update was applied and whether it was
  skipped for non-finite gradients (float 0/1 each).
  """
  finite = all_finite(grads)
  opt_state = net.opt_state
  if schedule is not None:  # the learning rate follows the training iteration
    opt_state = optim.set_learning_rate(opt_state, schedule(step))
  updates, opt_state = optimizer.update(grads, opt_state, net.params)
  updated = NetState(optax.apply_updates(net.params, updates), opt_state, new_batch_stats)
  applied = allowed & finite
  return (keep_if(applied, updated, net), applied.astype(jnp.float32),
          (allowed & ~finite).astype(jnp.float32))


def train_step(gan: GAN, state: GANState, batch: jax.Array, key: jax.Array
               ) -> tuple[GANState, dict[str, jax.Array]]:
  """`gan.d_steps` D updates, then `gan.g_steps` G updates, on this device's share of the batch.

  A network's update is skipped (its params, optimiser state and batch
  statistics stay as they were) when the balance rule rests it, or when its
  device-averaged gradients are not finite; the metrics count both.
  """
  step_key = jax.random.fold_in(key, state.step)
  real = image_lib.to_float(batch)
  # Other randomness differs per device: fold in the device index.
  key = jax.random.fold_in(step_key, lax.axis_index(BATCH_AXIS))
  d_key, g_key = jax.random.split(key, 2)
  G, D = gan.generator, gan.discriminator
  noise_std = instance_noise_std(gan, state.step)

  def fresh_latents(index):
    # The first D and G updates share the latents drawn from step_key; each later
    # update (index >= 1) draws its own. Folding in 0..num_devices-1 gives the
    # devices' keys, so these fold in num_devices + index.
    index_key = jax.random.fold_in(step_key, lax.axis_size(BATCH_AXIS) + index)
    return global_latents(index_key, real.shape[0], gan.latent_dim)

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
      lambda g_params: generate(g_params, state.g_batch_stats,
                                global_latents(step_key, real.shape[0], gan.latent_dim)),
      state.g_params, has_aux=True)

  # --- discriminator updates ---
  def d_gradients(d: NetState, fake, key):
    (_, aux), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
        d.params, d.batch_stats, lax.stop_gradient(fake), key)
    return lax.pmean(grads, BATCH_AXIS), aux

  d = NetState(state.d_params, state.d_opt_state, state.d_batch_stats)
  grads, (new_d_stats, d_loss, penalty, real_logits, fake_logits) = d_gradients(d, fake, d_key)
  # Balancing compares both losses on this batch, before either network moves.
  d_loss, g_loss_before = lax.pmean((d_loss, gan.loss.g_loss(fake_logits)), BATCH_AXIS)
  train_d, train_g = balance_updates(d_loss, g_loss_before, gan.balance_margin)
  metrics = {
      "d_loss": d_loss,
      "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
      "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
      # Norm of the device-averaged gradients of the first D update.
      "d_grad_norm": optax.tree.norm(grads),
  }
  if gan.gp_weight or gan.r1_gamma:
    metrics["d_penalty"] = penalty
  d, d_updates, d_skipped = guarded_update(gan.d_optimizer, gan.d_lr_schedule, state.step,
                                           train_d, grads, d, new_d_stats)

  def later_d_update(i, carry):
    # Fresh fakes from the same G (the statistics of this G forward are not kept).
    d, updates, skipped = carry
    fake_i, _ = generate(state.g_params, g_batch_stats, fresh_latents(i))
    grads, (new_d_stats, *_) = d_gradients(d, fake_i, jax.random.fold_in(d_key, i))
    d, applied, skip = guarded_update(gan.d_optimizer, gan.d_lr_schedule, state.step,
                                      train_d, grads, d, new_d_stats)
    return d, updates + applied, skipped + skip

  if gan.d_steps > 1:  # a loop, not unrolled: compile time does not grow with d_steps
    d, d_updates, d_skipped = lax.fori_loop(1, gan.d_steps, later_d_update,
                                            (d, d_updates, d_skipped))

  # --- generator updates, against the updated discriminator ---
  def g_loss_fn(fake_images, d_batch_stats, key):
    view_key, dropout_key = jax.random.split(key)
    logits, d_stats = discriminate(d.params, d_batch_stats, d_view(fake_images, view_key),
                                   dropout_key)
    return gan.loss.g_loss(logits), d_stats

  g = NetState(state.g_params, state.g_opt_state, state.g_batch_stats)
  (g_loss, new_d_stats), fake_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
      fake, d.batch_stats, g_key)
  (grads,) = g_pullback(fake_grads)
  grads = lax.pmean(grads, BATCH_AXIS)
  metrics.update(g_loss=g_loss, g_grad_norm=optax.tree.norm(grads))
  g, g_updates, g_skipped = guarded_update(gan.g_optimizer, gan.g_lr_schedule, state.step,
                                           train_g, grads, g, g_batch_stats)
  # D's running statistics move with the G step's forwards only while D trains.
  d_batch_stats = keep_if(train_d, new_d_stats, d.batch_stats)

  def later_g_update(j, carry):
    # A fresh G forward from the updated G.
    g, d_batch_stats, updates, skipped = carry

    def loss_fn(g_params):
      fake_j, g_stats = generate(g_params, g.batch_stats, fresh_latents(gan.d_steps + j))
      loss, d_stats = g_loss_fn(fake_j, d_batch_stats, jax.random.fold_in(g_key, j))
      return loss, (g_stats, d_stats)

    (_, (new_g_stats, new_d_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g.params)
    g, applied, skip = guarded_update(gan.g_optimizer, gan.g_lr_schedule, state.step, train_g,
                                      lax.pmean(grads, BATCH_AXIS), g, new_g_stats)
    return g, keep_if(train_d, new_d_stats, d_batch_stats), updates + applied, skipped + skip

  if gan.g_steps > 1:
    g, d_batch_stats, g_updates, g_skipped = lax.fori_loop(
        1, gan.g_steps, later_g_update, (g, d_batch_stats, g_updates, g_skipped))

  ema_g_params = state.ema_g_params
  if gan.ema_decay:
    ema_g_params = ema_update(ema_g_params, g.params, ema_decay_at(gan, state.step))

  new_state = state.replace(
      step=state.step + 1,
      g_params=g.params, g_batch_stats=g.batch_stats, g_opt_state=g.opt_state,
      d_params=d.params, d_batch_stats=d_batch_stats, d_opt_state=d.opt_state,
      ema_g_params=ema_g_params)
  # Updates applied, and updates skipped for non-finite gradients, this iteration.
  metrics.update(d_updates=d_updates, g_updates=g_updates, d_skipped=d_skipped,
                 g_skipped=g_skipped)
  return new_state, lax.pmean(metrics, BATCH_AXIS)


def make_train_step(gan: GAN):
  """`train_step` with the GAN bound: the (state, batch, key) function to map."""
  return functools.partial(train_step, gan)
