"""One GAN training iteration as a pure per-device function, and its parts.

`train_step(gan, state, batch, key) -> (state, metrics)` does one discriminator
update, then one generator update (more with train.d_steps / train.g_steps). It
runs under a mapped axis named 'batch' (shard_map, pmap, or a 1-device mesh);
gradients, losses and batch-norm statistics are averaged over that axis, so
every device ends the step with the same state.

`train_step` only orchestrates. The GAN's parts are the top-level functions
here: G's and D's forwards, the D and G losses and their updates, and the
calls of the techniques' hooks. The parts any family's step uses (guarded
optimiser update, EMA, latents, keys) are in `updates.py`; another family
writes its own step function from them beside this one.

The training techniques (techniques/) are the terms `GAN.techniques` holds, the
ones the config turns on: the step loops over them at each hook, so an option
that is off adds nothing to the compiled step, and a new technique needs no
change here.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from gan_jax import images as image_lib
from gan_jax import streams
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training import techniques
from gan_jax.training import updates
from gan_jax.training.gan import GAN
from gan_jax.training.state import GANState
from gan_jax.training.techniques import DRound, ViewKeys
from gan_jax.training.updates import NetState, ema_update, guarded_update, keep_if


# --- the techniques' hooks (techniques/base.py), in the order the bundle holds them ---

def ema_decay_at(gan: GAN, step: jax.Array) -> jax.Array:
  """The EMA decay at `step`; with ramp-up (StyleGAN) early steps average less."""
  if gan.ema_rampup:
    return jnp.minimum(gan.ema_decay, (1.0 + step) / (10.0 + step))
  return jnp.asarray(gan.ema_decay, jnp.float32)


def view_keys(key: jax.Array, shared_key: jax.Array | None) -> ViewKeys:
  """The keys of one view: this device's `key` split for augmentation and noise, and the
  update's global-batch key."""
  augment_key, noise_key = jax.random.split(key)
  return ViewKeys(augment_key, noise_key, shared_key)


def update_shared_key(step_key: jax.Array, index) -> jax.Array:
  """The global-batch augmentation key of the step's update number `index` (D's first is 0,
  G's first is train.d_steps): the same on every device."""
  return jax.random.fold_in(streams.augment_view_key(step_key), index)


def d_view(gan: GAN, images: jax.Array, keys: ViewKeys, step: jax.Array,
           states: dict[str, Any]) -> jax.Array:
  """The images as D sees them: through every technique's `view` (augmentation, noise)."""
  for technique in gan.techniques:
    images = technique.view(images, keys, step, states)
  return images


def d_targets(gan: GAN, label_key: jax.Array, batch_size: int):
  """D's loss targets (real, fake): (1, 0), or a technique's (label smoothing, flipping)."""
  for technique in gan.techniques:
    targets = technique.targets(label_key, batch_size)
    if targets is not None:
      return targets
  return 1.0, 0.0


def d_penalty(gan: GAN, d_round: DRound) -> jax.Array:
  """The techniques' terms added to D's loss, in order; 0 when none adds one."""
  penalty = jnp.zeros((), jnp.float32)
  for technique in gan.techniques:
    terms = technique.d_penalty(d_round)
    for term in (terms if isinstance(terms, tuple) else (terms,)):
      if term is not None:
        penalty += term
  return penalty


def choose_updates(gan: GAN, d_loss_value: jax.Array, g_loss_value: jax.Array):
  """(train D?, train G?) this step: both, unless a technique (balancing) says otherwise."""
  for technique in gan.techniques:
    chosen = technique.choose_updates(d_loss_value, g_loss_value)
    if chosen is not None:
      return chosen
  return jnp.array(True), jnp.array(True)


def technique_states(gan: GAN, states: dict[str, Any], d_aux: "DLossAux", step: jax.Array
                     ) -> dict[str, Any]:
  """The techniques' states after this step, from the first D update's logits. A
  non-finite update (D's logits went NaN) keeps the old state, as the optimiser updates do."""
  moved = {}
  for technique in gan.techniques:
    if technique.name in states:
      own = states[technique.name]
      new = technique.next_state(own, d_aux.real_logits, d_aux.fake_logits, step)
      moved[technique.name] = keep_if(updates.all_finite(new), new, own)
  return moved


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


# --- losses ---

class DLossAux(NamedTuple):
  """What `d_loss` reports besides the value it is differentiated for."""
  batch_stats: Any         # D's statistics after its real and fake forwards
  loss: jax.Array          # the GAN loss alone
  penalty: jax.Array       # the techniques' terms (0 when none adds one)
  real_logits: jax.Array
  fake_logits: jax.Array


def d_logit_loss(gan: GAN, real_logits: jax.Array, fake_logits: jax.Array,
                 label_key: jax.Array) -> jax.Array:
  """The GAN loss of D's logits against its targets (`d_targets`)."""
  return gan.loss.d_loss(real_logits, fake_logits,
                         *d_targets(gan, label_key, real_logits.shape[0]))


def d_loss(gan: GAN, d_params, d_batch_stats, real: jax.Array, fake: jax.Array, key: jax.Array,
           step: jax.Array, shared_key: jax.Array, states: dict[str, Any]
           ) -> tuple[jax.Array, DLossAux]:
  """D's objective on real and fake images: (loss + the techniques' terms, DLossAux).

  `shared_key` is the update's global-batch key: its four splits draw ADA's views of the
  reals and fakes and the techniques' extra views of them (bCR).
  """
  real_view, fake_view, real_drop, fake_drop, label_key, penalty_key = jax.random.split(key, 6)
  shared = jax.random.split(shared_key, 4)
  real_in = d_view(gan, real, view_keys(real_view, shared[0]), step, states)
  fake_in = d_view(gan, fake, view_keys(fake_view, shared[1]), step, states)
  real_logits, d_stats = discriminate(gan, d_params, d_batch_stats, real_in, real_drop)
  fake_logits, d_stats = discriminate(gan, d_params, d_stats, fake_in, fake_drop)
  loss = d_logit_loss(gan, real_logits, fake_logits, label_key)

  def critic(images, dropout_key):  # the penalties' D forwards keep D's statistics
    return discriminate(gan, d_params, d_stats, images, dropout_key)[0]

  penalty = d_penalty(gan, DRound(critic, real_in, fake_in, real_logits, fake_logits,
                                  (real_drop, fake_drop), penalty_key, (shared[2], shared[3]),
                                  step, states))
  return loss + penalty, DLossAux(d_stats, loss, penalty, real_logits, fake_logits)


def g_loss(gan: GAN, d_params, d_batch_stats, fake: jax.Array, key: jax.Array, step: jax.Array,
           shared_key: jax.Array, states: dict[str, Any]) -> tuple[jax.Array, Any]:
  """G's loss of D's view of `fake`: (loss, D's new batch statistics)."""
  view_key, dropout_key = jax.random.split(key)
  logits, d_stats = discriminate(gan, d_params, d_batch_stats,
                                 d_view(gan, fake, view_keys(view_key, shared_key), step, states),
                                 dropout_key)
  return gan.loss.g_loss(logits), d_stats


# --- updates ---

class StepContext(NamedTuple):
  """What every update of one step shares."""
  step: jax.Array
  step_key: jax.Array          # the same on every device: latents, global-batch draws
  states: dict[str, Any]       # the techniques' states at the start of the step


def d_gradients(gan: GAN, d: NetState, real: jax.Array, fake: jax.Array, key: jax.Array,
                ctx: StepContext, index) -> tuple[Any, DLossAux]:
  """D's device-averaged gradients of `d_loss` (no gradient flows into `fake`), and its aux,
  for the step's update number `index`."""
  (_, aux), grads = jax.value_and_grad(d_loss, argnums=1, has_aux=True)(
      gan, d.params, d.batch_stats, real, lax.stop_gradient(fake), key, ctx.step,
      update_shared_key(ctx.step_key, index), ctx.states)
  return lax.pmean(grads, BATCH_AXIS), aux


def later_d_updates(gan: GAN, d: NetState, applied: jax.Array, skipped: jax.Array,
                    real: jax.Array, g_params, g_batch_stats, d_key: jax.Array,
                    ctx: StepContext, train_d: jax.Array):
  """D updates 2..gan.d_steps in a loop: (d, applied, skipped), the counts accumulated.

  Each sees fresh fakes from the same G (the statistics of that forward are not
  kept) and its own key. A loop, not unrolled: compile time does not grow with d_steps.
  """
  def update(i, carry):
    d, applied, skipped = carry
    z = updates.extra_latents(ctx.step_key, i, real.shape[0], gan.latent_dim)
    fake, _ = generate(gan, g_params, g_batch_stats, z)
    grads, aux = d_gradients(gan, d, real, fake, jax.random.fold_in(d_key, i), ctx, i)
    d, now_applied, now_skipped = guarded_update(gan.d_optimizer, gan.d_lr_schedule, ctx.step,
                                                 train_d, grads, d, aux.batch_stats)
    return d, applied + now_applied, skipped + now_skipped

  return lax.fori_loop(1, gan.d_steps, update, (d, applied, skipped))


def g_gradients_by_pullback(gan: GAN, d: NetState, fake: jax.Array, g_pullback: Callable,
                            key: jax.Array, ctx: StepContext) -> tuple[Any, jax.Array, Any]:
  """G's device-averaged gradients for fakes already made: D's gradient of `g_loss`
  with respect to `fake`, pulled back through G's forward by `g_pullback` (its vjp).

  Returns (grads, this device's loss, D's new batch statistics).
  """
  (loss, d_stats), fake_grads = jax.value_and_grad(g_loss, argnums=3, has_aux=True)(
      gan, d.params, d.batch_stats, fake, key, ctx.step,
      update_shared_key(ctx.step_key, gan.d_steps), ctx.states)
  (grads,) = g_pullback(fake_grads)
  return lax.pmean(grads, BATCH_AXIS), loss, d_stats


def later_g_updates(gan: GAN, g: NetState, d_params, d_batch_stats, applied: jax.Array,
                    skipped: jax.Array, local_batch: int, g_key: jax.Array, ctx: StepContext,
                    train_d: jax.Array, train_g: jax.Array):
  """G updates 2..gan.g_steps in a loop: (g, d_batch_stats, applied, skipped).

  Each makes a fresh G forward from the updated G, with its own latents and key.
  D's statistics move with these forwards only while D trains.
  """
  def update(j, carry):
    g, d_batch_stats, applied, skipped = carry

    def loss_fn(g_params):
      z = updates.extra_latents(ctx.step_key, gan.d_steps + j, local_batch, gan.latent_dim)
      fake, g_stats = generate(gan, g_params, g.batch_stats, z)
      loss, d_stats = g_loss(gan, d_params, d_batch_stats, fake, jax.random.fold_in(g_key, j),
                             ctx.step, update_shared_key(ctx.step_key, gan.d_steps + j),
                             ctx.states)
      return loss, (g_stats, d_stats)

    (_, (g_stats, d_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g.params)
    g, now_applied, now_skipped = guarded_update(gan.g_optimizer, gan.g_lr_schedule, ctx.step,
                                                 train_g, lax.pmean(grads, BATCH_AXIS), g, g_stats)
    return (g, keep_if(train_d, d_stats, d_batch_stats), applied + now_applied,
            skipped + now_skipped)

  return lax.fori_loop(1, gan.g_steps, update, (g, d_batch_stats, applied, skipped))


# --- the step ---

def d_phase(gan: GAN, state: GANState, real: jax.Array, fake: jax.Array, g_batch_stats,
            d_key: jax.Array, ctx: StepContext):
  """The step's D updates: (d, (train_d, train_g), the first update's aux, counts, metrics).

  Balancing compares both losses on this batch, before either network moves.
  """
  d = NetState(state.d_params, state.d_opt_state, state.d_batch_stats)
  d_grads, d_aux = d_gradients(gan, d, real, fake, d_key, ctx, 0)
  d_loss_mean, g_loss_before = lax.pmean((d_aux.loss, gan.loss.g_loss(d_aux.fake_logits)),
                                         BATCH_AXIS)
  train_d, train_g = choose_updates(gan, d_loss_mean, g_loss_before)
  metrics = {"d_loss": d_loss_mean,
             # D's view of its outputs, as its loss reads them (losses.py): D(x)/D(G(z)) or raw.
             **gan.loss.d_metrics(d_aux.real_logits, d_aux.fake_logits, axis_name=BATCH_AXIS),
             "d_grad_norm": optax.tree.norm(d_grads)}  # of the first D update
  if any("d_penalty" in techniques.hooks_of(technique) for technique in gan.techniques):
    metrics["d_penalty"] = d_aux.penalty
  d, applied, skipped = guarded_update(gan.d_optimizer, gan.d_lr_schedule, ctx.step, train_d,
                                       d_grads, d, d_aux.batch_stats)
  if gan.d_steps > 1:
    d, applied, skipped = later_d_updates(gan, d, applied, skipped, real, state.g_params,
                                          g_batch_stats, d_key, ctx, train_d)
  return d, (train_d, train_g), d_aux, (applied, skipped), metrics


def train_step(gan: GAN, state: GANState, batch: jax.Array, key: jax.Array
               ) -> tuple[GANState, dict[str, jax.Array]]:
  """`gan.d_steps` D updates, then `gan.g_steps` G updates, on this device's share of the batch.

  A network's update is skipped (its params, optimiser state and batch
  statistics stay as they were) when a technique (balancing) rests it, or when its
  device-averaged gradients are not finite; the metrics count both.
  """
  step = state.step
  ctx = StepContext(step, jax.random.fold_in(key, step), state.techniques)
  real = image_lib.to_float(batch)
  d_key, g_key = jax.random.split(updates.device_key(ctx.step_key), 2)

  # One G forward serves the first D and the first G update: the D update reads
  # `fake`, the G update pulls D's gradient back through `g_pullback`.
  z = updates.global_latents(ctx.step_key, real.shape[0], gan.latent_dim)
  fake, g_pullback, g_batch_stats = jax.vjp(
      lambda g_params: generate(gan, g_params, state.g_batch_stats, z), state.g_params,
      has_aux=True)
  d, (train_d, train_g), d_aux, (d_updates, d_skipped), metrics = d_phase(
      gan, state, real, fake, g_batch_stats, d_key, ctx)

  # G, against the updated D.
  g = NetState(state.g_params, state.g_opt_state, state.g_batch_stats)
  g_grads, g_loss_value, new_d_stats = g_gradients_by_pullback(gan, d, fake, g_pullback, g_key,
                                                               ctx)
  metrics.update(g_loss=g_loss_value, g_grad_norm=optax.tree.norm(g_grads))
  g, g_updates, g_skipped = guarded_update(gan.g_optimizer, gan.g_lr_schedule, step, train_g,
                                           g_grads, g, g_batch_stats)
  # D's running statistics move with the G updates' forwards only while D trains.
  d_batch_stats = keep_if(train_d, new_d_stats, d.batch_stats)
  if gan.g_steps > 1:
    g, d_batch_stats, g_updates, g_skipped = later_g_updates(
        gan, g, d.params, d_batch_stats, g_updates, g_skipped, real.shape[0], g_key, ctx,
        train_d, train_g)

  ema_g_params = state.ema_g_params
  if gan.ema_decay:
    ema_g_params = ema_update(ema_g_params, g.params, ema_decay_at(gan, step))
  states = technique_states(gan, state.techniques, d_aux, step)
  for technique in gan.techniques:
    metrics.update(technique.metrics(states.get(technique.name)))
  # Updates applied, and updates skipped for non-finite gradients, this iteration.
  metrics.update(d_updates=d_updates, g_updates=g_updates, d_skipped=d_skipped,
                 g_skipped=g_skipped)
  new_state = state.replace(
      step=step + 1, g_params=g.params, g_batch_stats=g.batch_stats, g_opt_state=g.opt_state,
      d_params=d.params, d_batch_stats=d_batch_stats, d_opt_state=d.opt_state,
      ema_g_params=ema_g_params, techniques=states)
  return new_state, lax.pmean(metrics, BATCH_AXIS)


def make_train_step(gan: GAN):
  """`train_step` with the GAN bound: the (state, batch, key) function to map."""
  return functools.partial(train_step, gan)
