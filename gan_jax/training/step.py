"""One GAN training iteration as a pure per-device function, and its parts.

`train_step(gan, state, batch, key) -> (state, metrics)` does one discriminator
update, then one generator update (more with train.d_steps / train.g_steps). It
runs under a mapped axis named 'batch' (shard_map, pmap, or a 1-device mesh);
gradients, losses and batch-norm statistics are averaged over that axis, so
every device ends the step with the same state.

`train_step` only orchestrates. The GAN's parts are the top-level functions
here: G's and D's forwards, D's view of images, D's penalties, the D and G
losses and their updates. The parts any family's step uses (guarded optimiser
update, EMA, latents, keys) are in `updates.py`; another family writes its own
step function from them beside this one.

The training techniques (docs/options.md) are fields of `GAN`, read here as
Python values: an option that is off adds nothing to the compiled step.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from gan_jax import images as image_lib
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training import augment
from gan_jax.training import losses
from gan_jax.training import regularizers
from gan_jax.training import updates
from gan_jax.training.gan import GAN
from gan_jax.training.state import GANState
from gan_jax.training.updates import NetState, ema_update, guarded_update, keep_if


# --- techniques as functions of the iteration ---

def balance_updates(d_loss: jax.Array, g_loss: jax.Array, margin: float
                    ) -> tuple[jax.Array, jax.Array]:
  """(train D?, train G?) by seed 004's rule: when the losses differ by at least
  `margin`, train only the weaker network (the higher loss); otherwise both."""
  if not margin:
    return jnp.array(True), jnp.array(True)
  close = jnp.abs(g_loss - d_loss) < margin
  return close | (d_loss > g_loss), close | (g_loss > d_loss)


def ema_decay_at(gan: GAN, step: jax.Array) -> jax.Array:
  """The EMA decay at `step`; with ramp-up (StyleGAN) early steps average less."""
  if gan.ema_rampup:
    return jnp.minimum(gan.ema_decay, (1.0 + step) / (10.0 + step))
  return jnp.asarray(gan.ema_decay, jnp.float32)


def instance_noise_std(gan: GAN, step: jax.Array) -> jax.Array:
  """Instance-noise std, annealed linearly from gan.instance_noise to 0."""
  return gan.instance_noise * jnp.maximum(0.0, 1.0 - step / gan.instance_noise_steps)


# --- the networks' forwards ---

def generate(gan: GAN, g_params, g_batch_stats, z: jax.Array) -> tuple[jax.Array, Any]:
  """G's training forward: (fake images, G's new batch statistics)."""
  fake, new_vars = gan.generator.apply({"params": g_params, "batch_stats": g_batch_stats}, z,
                                       train=True, mutable=["batch_stats"])
  return fake, new_vars.get("batch_stats", {})


def discriminate(gan: GAN, d_params, d_batch_stats, images: jax.Array, dropout_key: jax.Array
                 ) -> tuple[jax.Array, Any]:
  """D's training forward: (logits, D's new batch statistics)."""
  logits, new_vars = gan.discriminator.apply(
      {"params": d_params, "batch_stats": d_batch_stats}, images, train=True,
      mutable=["batch_stats"], rngs={"dropout": dropout_key})
  return logits, new_vars.get("batch_stats", {})


def d_view(gan: GAN, images: jax.Array, key: jax.Array, step: jax.Array,
           ada_key: jax.Array | None = None, ada_p: jax.Array | None = None) -> jax.Array:
  """The images as D sees them: augmented (DiffAugment) and with instance noise.

  With ADA (`ada_p`), each group of the policy applies with probability ada_p,
  its draws from the global `ada_key` instead of this device's `key`.
  """
  augment_key, noise_key = jax.random.split(key)
  if gan.augment_policy and ada_p is not None:
    images = regularizers.augment_rows(images, ada_key, gan.augment_policy, ada_p)
  elif gan.augment_policy:
    images = augment.augment(images, augment_key, gan.augment_policy)
  if gan.instance_noise:
    images = images + instance_noise_std(gan, step) * jax.random.normal(noise_key, images.shape)
  return images


# --- losses ---

class DLossAux(NamedTuple):
  """What `d_loss` reports besides the value it is differentiated for."""
  batch_stats: Any         # D's statistics after its real and fake forwards
  loss: jax.Array          # the GAN loss alone
  penalty: jax.Array       # the gradient penalties (0 when off)
  real_logits: jax.Array
  fake_logits: jax.Array


def d_penalty(gan: GAN, d_params, d_batch_stats, real_in: jax.Array, fake_in: jax.Array,
              key: jax.Array, step: jax.Array) -> jax.Array:
  """Gradient penalties on D's inputs, WGAN-GP and (lazy) R1, weighted; 0 when both are off.

  The penalties' D forwards do not change D's batch statistics.
  """
  gp_key, dropout_key = jax.random.split(key)

  def critic(images):
    return discriminate(gan, d_params, d_batch_stats, images, dropout_key)[0]

  penalty = jnp.zeros((), jnp.float32)
  if gan.gp_weight:
    penalty += gan.gp_weight * losses.gradient_penalty(critic, real_in, fake_in, gp_key)
  if gan.r1_gamma:
    # Lazy R1 (StyleGAN2): every r1_every steps, scaled by r1_every to keep its weight.
    def r1():
      return 0.5 * gan.r1_gamma * gan.r1_every * losses.r1_penalty(critic, real_in)
    penalty += r1() if gan.r1_every == 1 else lax.cond(
        step % gan.r1_every == 0, r1, lambda: jnp.zeros((), jnp.float32))
  return penalty


def d_regularizers(gan: GAN, d_params, d_batch_stats, real_in: jax.Array, fake_in: jax.Array,
                   real_logits: jax.Array, fake_logits: jax.Array, dropout_keys, view_keys,
                   regs: regularizers.Inputs) -> jax.Array:
  """LeCam and bCR on D's inputs and logits, weighted; 0 when both are off.

  bCR's D forwards reuse their images' dropout keys (only T differs) and do
  not change D's batch statistics.
  """
  total = jnp.zeros((), jnp.float32)
  if gan.lecam_weight:
    total += gan.lecam_weight * regularizers.lecam_penalty(real_logits, fake_logits, regs.lecam)
  for weight, images, logits, dropout_key, view_key in (
      (gan.bcr_real, real_in, real_logits, dropout_keys[0], view_keys[0]),
      (gan.bcr_fake, fake_in, fake_logits, dropout_keys[1], view_keys[1])):
    if weight:
      augmented = regularizers.augment_rows(images, view_key, gan.bcr_policy)
      augmented_logits = discriminate(gan, d_params, d_batch_stats, augmented, dropout_key)[0]
      total += weight * regularizers.consistency_penalty(logits, augmented_logits)
  return total


def d_logit_loss(gan: GAN, real_logits: jax.Array, fake_logits: jax.Array,
                 label_key: jax.Array) -> jax.Array:
  """The GAN loss of D's logits, against smoothed or randomly flipped targets when asked."""
  targets = (losses.label_targets(label_key, real_logits.shape[0], gan.real_label, gan.flip_prob)
             if gan.flip_prob else (gan.real_label, 0.0))
  return gan.loss.d_loss(real_logits, fake_logits, *targets)


def d_loss(gan: GAN, d_params, d_batch_stats, real: jax.Array, fake: jax.Array, key: jax.Array,
           step: jax.Array, regs: regularizers.Inputs | None = None
           ) -> tuple[jax.Array, DLossAux]:
  """D's objective on real and fake images: (loss + penalty, DLossAux).

  `regs` (None when ADA, LeCam and bCR are off) are the regularisers' inputs.
  """
  real_view, fake_view, real_drop, fake_drop, label_key, penalty_key = jax.random.split(key, 6)
  if regs is None:
    real_in, fake_in = d_view(gan, real, real_view, step), d_view(gan, fake, fake_view, step)
  else:
    views = jax.random.split(regs.view_key, 4) if regs.view_key is not None else [None] * 4
    real_in = d_view(gan, real, real_view, step, views[0], regs.ada_p)
    fake_in = d_view(gan, fake, fake_view, step, views[1], regs.ada_p)
  real_logits, d_stats = discriminate(gan, d_params, d_batch_stats, real_in, real_drop)
  fake_logits, d_stats = discriminate(gan, d_params, d_stats, fake_in, fake_drop)
  loss = d_logit_loss(gan, real_logits, fake_logits, label_key)
  penalty = (d_penalty(gan, d_params, d_stats, real_in, fake_in, penalty_key, step)
             if gan.gp_weight or gan.r1_gamma else jnp.zeros((), jnp.float32))
  if regs is not None and gan.regularizes_d:
    penalty += d_regularizers(gan, d_params, d_stats, real_in, fake_in, real_logits, fake_logits,
                              (real_drop, fake_drop), views[2:], regs)
  return loss + penalty, DLossAux(d_stats, loss, penalty, real_logits, fake_logits)


def g_loss(gan: GAN, d_params, d_batch_stats, fake: jax.Array, key: jax.Array, step: jax.Array,
           regs: regularizers.Inputs | None = None) -> tuple[jax.Array, Any]:
  """G's loss of D's view of `fake`: (loss, D's new batch statistics)."""
  view_key, dropout_key = jax.random.split(key)
  ada = () if regs is None else (regs.view_key, regs.ada_p)
  logits, d_stats = discriminate(gan, d_params, d_batch_stats,
                                 d_view(gan, fake, view_key, step, *ada), dropout_key)
  return gan.loss.g_loss(logits), d_stats


# --- updates ---

def d_gradients(gan: GAN, d: NetState, real: jax.Array, fake: jax.Array, key: jax.Array,
                step: jax.Array, regs: regularizers.Inputs | None = None
                ) -> tuple[Any, DLossAux]:
  """D's device-averaged gradients of `d_loss` (no gradient flows into `fake`), and its aux."""
  (_, aux), grads = jax.value_and_grad(d_loss, argnums=1, has_aux=True)(
      gan, d.params, d.batch_stats, real, lax.stop_gradient(fake), key, step, regs)
  return lax.pmean(grads, BATCH_AXIS), aux


def later_d_updates(gan: GAN, d: NetState, applied: jax.Array, skipped: jax.Array,
                    real: jax.Array, g_params, g_batch_stats, step_key: jax.Array,
                    d_key: jax.Array, step: jax.Array, train_d: jax.Array,
                    regs: regularizers.Inputs | None = None):
  """D updates 2..gan.d_steps in a loop: (d, applied, skipped), the counts accumulated.

  Each sees fresh fakes from the same G (the statistics of that forward are not
  kept) and its own key. A loop, not unrolled: compile time does not grow with d_steps.
  """
  def update(i, carry):
    d, applied, skipped = carry
    z = updates.extra_latents(step_key, i, real.shape[0], gan.latent_dim)
    fake, _ = generate(gan, g_params, g_batch_stats, z)
    grads, aux = d_gradients(gan, d, real, fake, jax.random.fold_in(d_key, i), step,
                             regs and regularizers.for_update(regs, i))
    d, now_applied, now_skipped = guarded_update(gan.d_optimizer, gan.d_lr_schedule, step,
                                                 train_d, grads, d, aux.batch_stats)
    return d, applied + now_applied, skipped + now_skipped

  return lax.fori_loop(1, gan.d_steps, update, (d, applied, skipped))


def g_gradients_by_pullback(gan: GAN, d: NetState, fake: jax.Array, g_pullback: Callable,
                            key: jax.Array, step: jax.Array,
                            regs: regularizers.Inputs | None = None
                            ) -> tuple[Any, jax.Array, Any]:
  """G's device-averaged gradients for fakes already made: D's gradient of `g_loss`
  with respect to `fake`, pulled back through G's forward by `g_pullback` (its vjp).

  Returns (grads, this device's loss, D's new batch statistics).
  """
  (loss, d_stats), fake_grads = jax.value_and_grad(g_loss, argnums=3, has_aux=True)(
      gan, d.params, d.batch_stats, fake, key, step, regs)
  (grads,) = g_pullback(fake_grads)
  return lax.pmean(grads, BATCH_AXIS), loss, d_stats


def later_g_updates(gan: GAN, g: NetState, d_params, d_batch_stats, applied: jax.Array,
                    skipped: jax.Array, local_batch: int, step_key: jax.Array,
                    g_key: jax.Array, step: jax.Array, train_d: jax.Array, train_g: jax.Array,
                    regs: regularizers.Inputs | None = None):
  """G updates 2..gan.g_steps in a loop: (g, d_batch_stats, applied, skipped).

  Each makes a fresh G forward from the updated G, with its own latents and key.
  D's statistics move with these forwards only while D trains.
  """
  def update(j, carry):
    g, d_batch_stats, applied, skipped = carry

    def loss_fn(g_params):
      z = updates.extra_latents(step_key, gan.d_steps + j, local_batch, gan.latent_dim)
      fake, g_stats = generate(gan, g_params, g.batch_stats, z)
      loss, d_stats = g_loss(gan, d_params, d_batch_stats, fake, jax.random.fold_in(g_key, j),
                             step, regs and regularizers.for_update(regs, gan.d_steps + j))
      return loss, (g_stats, d_stats)

    (_, (g_stats, d_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g.params)
    g, now_applied, now_skipped = guarded_update(gan.g_optimizer, gan.g_lr_schedule, step,
                                                 train_g, lax.pmean(grads, BATCH_AXIS), g, g_stats)
    return (g, keep_if(train_d, d_stats, d_batch_stats), applied + now_applied,
            skipped + now_skipped)

  return lax.fori_loop(1, gan.g_steps, update, (g, d_batch_stats, applied, skipped))


# --- the step ---

def regularizer_states(gan: GAN, state: GANState, d_aux: DLossAux, step: jax.Array
                       ) -> dict[str, Any]:
  """ADA's and LeCam's state after this step, from the first D update's logits.

  A non-finite update (D's logits went NaN) keeps the old state, as the
  optimiser updates do.
  """
  def finite_or_old(new, old):
    return keep_if(updates.all_finite(new), new, old)

  moved = {}
  if gan.ada_target:
    # The overfitting measure r: how many reals D calls real, by its loss's own boundary.
    r_step = regularizers.mean_sign(d_aux.real_logits, gan.loss.boundary)
    ada = regularizers.ada_update(state.ada, r_step, step, gan.ada_target, gan.ada_interval,
                                  gan.ada_adjustment)
    moved["ada"] = finite_or_old(ada, state.ada)
  if gan.lecam_weight:
    lecam = regularizers.lecam_update(state.lecam, d_aux.real_logits, d_aux.fake_logits,
                                      gan.lecam_decay)
    moved["lecam"] = finite_or_old(lecam, state.lecam)
  return moved


def train_step(gan: GAN, state: GANState, batch: jax.Array, key: jax.Array
               ) -> tuple[GANState, dict[str, jax.Array]]:
  """`gan.d_steps` D updates, then `gan.g_steps` G updates, on this device's share of the batch.

  A network's update is skipped (its params, optimiser state and batch
  statistics stay as they were) when the balance rule rests it, or when its
  device-averaged gradients are not finite; the metrics count both.
  """
  step = state.step
  step_key = jax.random.fold_in(key, step)  # the same on every device: the latents
  real = image_lib.to_float(batch)
  d_key, g_key = jax.random.split(updates.device_key(step_key), 2)

  # One G forward serves the first D and the first G update: the D update reads
  # `fake`, the G update pulls D's gradient back through `g_pullback`.
  z = updates.global_latents(step_key, real.shape[0], gan.latent_dim)
  fake, g_pullback, g_batch_stats = jax.vjp(
      lambda g_params: generate(gan, g_params, state.g_batch_stats, z), state.g_params,
      has_aux=True)

  # D. Balancing compares both losses on this batch, before either network moves.
  d = NetState(state.d_params, state.d_opt_state, state.d_batch_stats)
  regs = (regularizers.step_inputs(state.ada, state.lecam, step_key, gan.global_views)
          if gan.regularizes else None)
  d_grads, d_aux = d_gradients(gan, d, real, fake, d_key, step,
                               regs and regularizers.for_update(regs, 0))
  d_loss_mean, g_loss_before = lax.pmean((d_aux.loss, gan.loss.g_loss(d_aux.fake_logits)),
                                         BATCH_AXIS)
  train_d, train_g = balance_updates(d_loss_mean, g_loss_before, gan.balance_margin)
  metrics = {"d_loss": d_loss_mean,
             # D's view of its outputs, as its loss reads them (losses.py): D(x)/D(G(z)) or raw.
             **gan.loss.d_metrics(d_aux.real_logits, d_aux.fake_logits, axis_name=BATCH_AXIS),
             "d_grad_norm": optax.tree.norm(d_grads)}  # of the first D update
  if gan.gp_weight or gan.r1_gamma or gan.regularizes_d:
    metrics["d_penalty"] = d_aux.penalty
  d, d_updates, d_skipped = guarded_update(gan.d_optimizer, gan.d_lr_schedule, step, train_d,
                                           d_grads, d, d_aux.batch_stats)
  if gan.d_steps > 1:
    d, d_updates, d_skipped = later_d_updates(gan, d, d_updates, d_skipped, real, state.g_params,
                                              g_batch_stats, step_key, d_key, step, train_d,
                                              regs)

  # G, against the updated D.
  g = NetState(state.g_params, state.g_opt_state, state.g_batch_stats)
  g_grads, g_loss_value, new_d_stats = g_gradients_by_pullback(
      gan, d, fake, g_pullback, g_key, step, regs and regularizers.for_update(regs, gan.d_steps))
  metrics.update(g_loss=g_loss_value, g_grad_norm=optax.tree.norm(g_grads))
  g, g_updates, g_skipped = guarded_update(gan.g_optimizer, gan.g_lr_schedule, step, train_g,
                                           g_grads, g, g_batch_stats)
  # D's running statistics move with the G updates' forwards only while D trains.
  d_batch_stats = keep_if(train_d, new_d_stats, d.batch_stats)
  if gan.g_steps > 1:
    g, d_batch_stats, g_updates, g_skipped = later_g_updates(
        gan, g, d.params, d_batch_stats, g_updates, g_skipped, real.shape[0], step_key, g_key,
        step, train_d, train_g, regs)

  ema_g_params = state.ema_g_params
  if gan.ema_decay:
    ema_g_params = ema_update(ema_g_params, g.params, ema_decay_at(gan, step))
  new_state = state.replace(
      step=step + 1,
      g_params=g.params, g_batch_stats=g.batch_stats, g_opt_state=g.opt_state,
      d_params=d.params, d_batch_stats=d_batch_stats, d_opt_state=d.opt_state,
      ema_g_params=ema_g_params)
  if gan.regularizes:
    new_state = new_state.replace(**regularizer_states(gan, state, d_aux, step))
    if gan.ada_target:
      metrics["ada_p"] = new_state.ada["p"]
  # Updates applied, and updates skipped for non-finite gradients, this iteration.
  metrics.update(d_updates=d_updates, g_updates=g_updates, d_skipped=d_skipped,
                 g_skipped=g_skipped)
  return new_state, lax.pmean(metrics, BATCH_AXIS)


def make_train_step(gan: GAN):
  """`train_step` with the GAN bound: the (state, batch, key) function to map."""
  return functools.partial(train_step, gan)
