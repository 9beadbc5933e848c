"""One VAE-GAN training iteration as a pure per-device function (Larsen et al. 2016, Alg. 1).

`train_step(vaegan, state, batch, key) -> (state, metrics)` updates the three
networks together, each from the gradients of its own loss at the same weights:

  E: kl_weight * KL(q(z|x) || N(0, I)) + L_recon
  G: recon_weight * L_recon + the GAN loss of D on reconstructions and prior samples
  D: the GAN loss of reals against reconstructions and prior samples

where L_recon is the squared distance between D's hidden features
(block `model.feature_block` from the end) of a real image and of its reconstruction
G(z), z = mean + sigma * noise from E: the learned similarity, not pixels.

It runs under the mapped axis 'batch' like the GAN's step (step.py), whose
forwards and views of images it reuses; `updates.py` gives the guarded
(skipped when not finite) optimiser updates, the EMA and the latents. So data
parallelism, batch-norm synchronisation, bfloat16 and the metrics' averaging
are the GAN's.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from gan_jax import images as image_lib
from gan_jax import streams
from gan_jax.parallel import BATCH_AXIS
from gan_jax.training import step as gan_step
from gan_jax.training import updates
from gan_jax.training.updates import NetState, ema_update, guarded_update
from gan_jax.training.vaegan import VAEGAN, VAEGANState

# The technique hooks this step calls (techniques/base.py): D's view of images and its loss
# targets. A technique that needs another (a penalty, balancing, a state) is refused.
TECHNIQUE_HOOKS = frozenset({"view", "targets"})

# --- the VAE's terms ---

def per_image_sum(x: jax.Array) -> jax.Array:
  """Summed over all but the batch axis, averaged over the batch."""
  return jnp.mean(jnp.sum(x.reshape(x.shape[0], -1), axis=1))


# Both terms are per-image sums, as the paper's likelihoods: with means instead, the
# reconstruction (thousands of features) was so small beside the KL (a few latents)
# that q(z|x) collapsed onto the prior and reconstructions ignored their inputs.
def kl_divergence(mean: jax.Array, log_variance: jax.Array) -> jax.Array:
  """KL(N(mean, exp(log_variance)) || N(0, I)) of each image, averaged over the batch."""
  return 0.5 * per_image_sum(jnp.exp(log_variance) + jnp.square(mean) - 1.0 - log_variance)


def feature_reconstruction(real_features: jax.Array, recon_features: jax.Array) -> jax.Array:
  """Half the squared distance between D's features of a real image and of its
  reconstruction, averaged over the batch: minus the Gaussian log-likelihood (unit
  variance) in D's feature space, up to a constant."""
  return 0.5 * per_image_sum(jnp.square(real_features - recon_features))


def posterior_sample(mean: jax.Array, log_variance: jax.Array, noise: jax.Array) -> jax.Array:
  """z ~ q(z|x) by the reparameterisation z = mean + sigma * noise, differentiable in both."""
  return mean + jnp.exp(0.5 * log_variance) * noise


# --- the forwards ---

def encode(vaegan: VAEGAN, e_params, e_batch_stats, images: jax.Array
           ) -> tuple[jax.Array, jax.Array, Any]:
  """E's training forward: (mean, log-variance, E's new batch statistics)."""
  (mean, log_variance), new_vars = vaegan.encoder.apply(
      {"params": e_params, "batch_stats": e_batch_stats}, images, train=True,
      mutable=["batch_stats"])
  return mean, log_variance, new_vars.get("batch_stats", {})


def discriminate_features(vaegan: VAEGAN, d_params, d_batch_stats, images: jax.Array,
                          dropout_key: jax.Array) -> tuple[jax.Array, jax.Array, Any]:
  """D's training forward: (logits, hidden features, D's new batch statistics)."""
  (logits, features), new_vars = vaegan.discriminator.apply(
      {"params": d_params, "batch_stats": d_batch_stats}, images, train=True,
      features=vaegan.feature_block,
      mutable=["batch_stats"], rngs={"dropout": dropout_key})
  return logits, features, new_vars.get("batch_stats", {})


class Keys(NamedTuple):
  """This device's keys of one iteration. A real image and its reconstruction share
  their view and dropout, so their features differ only by the images."""
  pair_view: jax.Array
  pair_dropout: jax.Array
  prior_view: jax.Array
  prior_dropout: jax.Array


class Forward(NamedTuple):
  """What one pass of E, G and D gives: the images, D's outputs and the networks' statistics."""
  recon: jax.Array
  prior: jax.Array
  real_logits: jax.Array
  fake_logits: jax.Array   # of the reconstructions, then of the prior samples
  e_batch_stats: Any
  g_batch_stats: Any
  d_batch_stats: Any


def d_outputs(vaegan: VAEGAN, d_params, d_batch_stats, real, recon, prior, keys: Keys, step):
  """D on reals, reconstructions, prior samples: (real logits, fake logits, real features,
  reconstruction features, D's statistics after the three forwards)."""
  def view(images, key):  # this step draws no global-batch views and holds no technique state
    return gan_step.d_view(vaegan, images, gan_step.view_keys(key, None), step, {})

  real_logits, real_features, d_stats = discriminate_features(
      vaegan, d_params, d_batch_stats, view(real, keys.pair_view), keys.pair_dropout)
  recon_logits, recon_features, d_stats = discriminate_features(
      vaegan, d_params, d_stats, view(recon, keys.pair_view), keys.pair_dropout)
  prior_logits, _, d_stats = discriminate_features(
      vaegan, d_params, d_stats, view(prior, keys.prior_view), keys.prior_dropout)
  return (real_logits, jnp.concatenate([recon_logits, prior_logits]), real_features,
          recon_features, d_stats)


def forward(vaegan: VAEGAN, state: VAEGANState, e_params, g_params, d_params, real: jax.Array,
            noise: jax.Array, z_prior: jax.Array, keys: Keys, label_key: jax.Array,
            step: jax.Array) -> tuple[dict[str, jax.Array], Forward]:
  """E -> z -> G -> D, and G on prior latents -> D: ({'kl', 'recon', 'gan', 'd'} terms,
  Forward); 'd' is D's GAN loss of reals against reconstructions and prior samples."""
  mean, log_variance, e_stats = encode(vaegan, e_params, state.e_batch_stats, real)
  z = posterior_sample(mean, log_variance, noise)
  recon, g_stats = gan_step.generate(vaegan, g_params, state.g_batch_stats, z)
  prior, g_stats = gan_step.generate(vaegan, g_params, g_stats, z_prior)
  real_logits, fake_logits, real_features, recon_features, d_stats = d_outputs(
      vaegan, d_params, state.d_batch_stats, real, recon, prior, keys, step)
  terms = {"kl": kl_divergence(mean, log_variance),
           "recon": feature_reconstruction(real_features, recon_features),
           "gan": vaegan.loss.g_loss(fake_logits),
           "d": gan_step.d_logit_loss(vaegan, real_logits, fake_logits, label_key)}
  return terms, Forward(recon, prior, real_logits, fake_logits, e_stats, g_stats, d_stats)


def gradients(vaegan: VAEGAN, state: VAEGANState, real, noise, z_prior, keys: Keys, label_key,
              step) -> tuple[Any, Any, Any, dict, Forward]:
  """E's, G's and D's device-averaged gradients of their losses, from one forward (D's three
  passes run once) and three pullbacks, each of its own network's loss.

  D's pullback also reaches E and G (its images come from them); those parts are unused
  and the compiler drops them, so D learns as from images with stopped gradients."""
  terms, pullback, out = jax.vjp(
      lambda e_params, g_params, d_params: forward(
          vaegan, state, e_params, g_params, d_params, real, noise, z_prior, keys, label_key,
          step), state.e_params, state.g_params, state.d_params, has_aux=True)

  def weights(**nonzero):
    return {term: jnp.asarray(nonzero.get(term, 0.0), jnp.float32) for term in terms}
  e_grads = pullback(weights(kl=vaegan.kl_weight, recon=1.0))[0]
  g_grads = pullback(weights(recon=vaegan.recon_weight, gan=1.0))[1]
  d_grads = pullback(weights(d=1.0))[2]
  return (lax.pmean(e_grads, BATCH_AXIS), lax.pmean(g_grads, BATCH_AXIS),
          lax.pmean(d_grads, BATCH_AXIS), terms, out)


# --- the step ---

def train_step(vaegan: VAEGAN, state: VAEGANState, batch: jax.Array, key: jax.Array
               ) -> tuple[VAEGANState, dict[str, jax.Array]]:
  """One update of E, G and D on this device's share of the batch, all from the same weights.

  An update whose device-averaged gradients are not finite is skipped (that
  network keeps its params, optimiser state and batch statistics); the
  metrics count it.
  """
  step = state.step
  step_key = jax.random.fold_in(key, step)  # the same on every device: the latents
  real = image_lib.to_float(batch)
  local_batch = real.shape[0]
  # Latents and posterior noise are drawn for the global batch: the device count changes nothing.
  z_prior = updates.global_latents(step_key, local_batch, vaegan.latent_dim)
  noise = updates.global_latents(streams.reparameterisation_key(step_key), local_batch,
                                 vaegan.latent_dim)
  *view_keys, label_key = jax.random.split(updates.device_key(step_key), 5)
  keys = Keys(*view_keys)

  e_grads, g_grads, d_grads, terms, out = gradients(vaegan, state, real, noise, z_prior, keys,
                                                    label_key, step)

  always = jnp.array(True)
  e, e_updates, e_skipped = guarded_update(
      vaegan.e_optimizer, vaegan.e_lr_schedule, step, always, e_grads,
      NetState(state.e_params, state.e_opt_state, state.e_batch_stats), out.e_batch_stats)
  g, g_updates, g_skipped = guarded_update(
      vaegan.g_optimizer, vaegan.g_lr_schedule, step, always, g_grads,
      NetState(state.g_params, state.g_opt_state, state.g_batch_stats), out.g_batch_stats)
  d, d_updates, d_skipped = guarded_update(
      vaegan.d_optimizer, vaegan.d_lr_schedule, step, always, d_grads,
      NetState(state.d_params, state.d_opt_state, state.d_batch_stats), out.d_batch_stats)

  ema_g_params = state.ema_g_params
  if vaegan.ema_decay:
    ema_g_params = ema_update(ema_g_params, g.params, gan_step.ema_decay_at(vaegan, step))
  new_state = state.replace(
      step=step + 1,
      e_params=e.params, e_batch_stats=e.batch_stats, e_opt_state=e.opt_state,
      g_params=g.params, g_batch_stats=g.batch_stats, g_opt_state=g.opt_state,
      d_params=d.params, d_batch_stats=d.batch_stats, d_opt_state=d.opt_state,
      ema_g_params=ema_g_params)
  metrics = {
      "d_loss": terms["d"], "g_loss": terms["gan"],
      **vaegan.loss.d_metrics(out.real_logits, out.fake_logits, axis_name=BATCH_AXIS),
      "recon_loss": terms["recon"], "kl": terms["kl"],
      "recon_pixel_mse": jnp.mean(jnp.square(out.recon - real)),
      "e_grad_norm": optax.tree.norm(e_grads), "g_grad_norm": optax.tree.norm(g_grads),
      "d_grad_norm": optax.tree.norm(d_grads),
      "e_updates": e_updates, "g_updates": g_updates, "d_updates": d_updates,
      "e_skipped": e_skipped, "g_skipped": g_skipped, "d_skipped": d_skipped}
  return new_state, lax.pmean(metrics, BATCH_AXIS)


def make_train_step(vaegan: VAEGAN):
  """`train_step` with the VAE-GAN bound: the (state, batch, key) function to map."""
  return functools.partial(train_step, vaegan)
