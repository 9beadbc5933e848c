"""Every random stream of a run, in one table; each key derives from `config.seed`.

No code on the training path uses numpy.random, Python's `random` or the clock;
every draw comes from one of these JAX keys (`key(s)` is `jax.random.key(s)`).
"run" is the third key of the split, kept in `GANState.key`.

  stream                         key                                      where
  G and D init; the run key      split(key(seed), 3) -> (G, D, run)       init_keys: state.py
  step s: z of its first D and   step_key = fold_in(run, s); z from       training/step.py,
    G update                     global_latents                           updates.py
  step s, per device: dropout,   fold_in(step_key, device index), split   device_key: updates.py
    DiffAugment, instance noise,
    label flips, penalty mixing
  step s: z of later D/G updates fold_in(step_key, num_devices + update)  extra_latents: updates.py
  order of the examples, epoch e fold_in(key(seed), e)                    epoch_key: pipeline.py
  horizontal flips of step s     fold_in(fold_in(key(seed), FLIP_STREAM), s)
                                                                          flip_key: pipeline.py
  the sample grid's latents      fold_in(key(seed), SAMPLE_NOISE_STREAM)  sample_noise_key: train.py
  latent i of `--seed S`         fold_in(key(S), i)                       latent_key: latents.py
  VAE-GAN: the encoder's init    fold_in(key(seed), ENCODER_STREAM)       encoder_init_key:
                                                                            training/vaegan.py
  VAE-GAN step s: the noise of   fold_in(step_key, ENCODER_STREAM), drawn reparameterisation_key:
    z = mean + sigma * noise       for the global batch (global_latents)    vaegan_step.py
  step s: ADA's and bCR's        fold_in(step_key, AUGMENT_VIEW_STREAM),  augment_view_key:
    augmentations (update u: one   fold_in u, split per use; drawn for the    training/step.py
    more fold_in)                  global batch and sliced                    (update_shared_key)
  evaluation latents (FID in     latents 0..N-1 of seed EVAL_SEED = 0     eval/evaluator.py
    training, `evaluate run`)      (the images of `generate --seed 0`)
  latents that re-estimate the   fold_in(key(EVAL_SEED),                  ema_stats_key:
    EMA generator's batch-norm     EMA_STATS_STREAM): the same for every    training/
    statistics (ema_batch_stats)   run and every sampling call              ema_stats.py

Known overlaps, kept. Several streams fold small numbers n into the same
root key(seed), and with JAX's default (partitionable) threefry, split(k, 3)[i]
is fold_in(k, i), so one root key serves several streams:

  n = 0   G's init key, epoch 0's order, latent 0 of `--seed seed`
  n = 1   D's init key, epoch 1's order, the sample grid's latents, latent 1
  n = 2   the run key (the parent of every step key), epoch 2's order, latent 2
  n >= 3  epoch n's order, latent n
  n = EMA_STATS_STREAM = 2**30, under key(0) only: the EMA statistics' latents,
          latent n of seed 0, epoch n of seed 0 (never reached)

The draws differ in kind and shape (initial weights, a permutation, a normal
matrix), so nothing visibly repeats. Renumbering a stream would change the
weights, data order or samples of every existing run and break the exact
resume of checkpoints written before the change, so the numbers stay.
"""

from __future__ import annotations

import jax

# The sample grid's stream under key(seed); equal to epoch 1's (see the module docstring).
SAMPLE_NOISE_STREAM = 1
# Flips have their own stream under key(seed); epochs (small numbers) fold into
# the same key, so this number is far above any epoch.
FLIP_STREAM = 2**31 - 2
# Latent seed of every evaluation: the images of `generate --seed 0 --num N`.
EVAL_SEED = 0
# The latents of the EMA generator's re-estimated batch statistics, under key(EVAL_SEED):
# far above any latent index or epoch, and apart from the 2**31 - k streams.
EMA_STATS_STREAM = 2**30
# The VAE-GAN encoder's streams, under key(seed) (its init) and under each step key (the
# reparameterisation noise): far above any epoch, device index or update number folded there.
ENCODER_STREAM = 2**31 - 3
# ADA's and bCR's augmentations under each step key, the same on every device (the
# DiffAugment of augment.policy without ADA keeps its per-device key).
AUGMENT_VIEW_STREAM = 2**31 - 4


def init_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(G's init key, D's init key, the run key) from the run's `key(seed)`."""
  g_key, d_key, run_key = jax.random.split(key, 3)
  return g_key, d_key, run_key


def encoder_init_key(key: jax.Array) -> jax.Array:
  """The VAE-GAN encoder's init key from the run's `key(seed)` (G's, D's and the run key stay)."""
  return jax.random.fold_in(key, ENCODER_STREAM)


def reparameterisation_key(step_key: jax.Array) -> jax.Array:
  """The key of a VAE-GAN step's posterior noise; the same on every device."""
  return jax.random.fold_in(step_key, ENCODER_STREAM)


def augment_view_key(step_key: jax.Array) -> jax.Array:
  """The key of a step's ADA and bCR augmentations; the same on every device."""
  return jax.random.fold_in(step_key, AUGMENT_VIEW_STREAM)


def epoch_key(seed: int, epoch) -> jax.Array:
  """The key of epoch `epoch`'s permutation of the examples; traceable in `epoch`."""
  return jax.random.fold_in(jax.random.key(seed), epoch)


def flip_key(seed: int, step) -> jax.Array:
  """The key of the horizontal flips of global batch `step`; traceable in `step`."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), FLIP_STREAM), step)


def sample_noise_key(seed: int) -> jax.Array:
  """The key of the sample grid's latents: the same for a whole run and its resumes."""
  return jax.random.fold_in(jax.random.key(seed), SAMPLE_NOISE_STREAM)


def latent_key(seed: int, index) -> jax.Array:
  """The key of latent `index` of `seed` (`generate --seed seed`); traceable in `index`."""
  return jax.random.fold_in(jax.random.key(seed), index)


def ema_stats_key() -> jax.Array:
  """The key of the latents that re-estimate the EMA generator's batch statistics (all runs)."""
  return jax.random.fold_in(jax.random.key(EVAL_SEED), EMA_STATS_STREAM)
