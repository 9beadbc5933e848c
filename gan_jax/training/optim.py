"""Adam for G and D with learning-rate schedules over the training iterations.

The learning rate is a function of the training iteration (state.step), not of
the optimiser's own update count: with several D steps per iteration, or
updates skipped by balancing, the two counts differ, and the schedule should
still reach its end at train.num_steps. So the optimiser keeps its learning
rate as a hyper-parameter in its state (optax.inject_hyperparams) and the train
step sets it from the schedule before every update.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

SCHEDULES = ("constant", "linear", "cosine")


def learning_rate_schedule(base_lr: float, schedule: str, num_steps: int,
                           warmup_steps: int = 0) -> optax.Schedule:
  """Linear warm-up from 0 over `warmup_steps`, then constant, or decay to 0 at `num_steps`."""
  decay_steps = max(num_steps - warmup_steps, 1)
  if schedule == "constant":
    main = optax.constant_schedule(base_lr)
  elif schedule == "linear":
    main = optax.linear_schedule(base_lr, 0.0, decay_steps)
  elif schedule == "cosine":
    main = optax.cosine_decay_schedule(base_lr, decay_steps)
  else:
    raise ValueError(f"unknown optim.schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
  if not warmup_steps:
    return main
  warmup = optax.linear_schedule(0.0, base_lr, warmup_steps)
  return optax.join_schedules([warmup, main], [warmup_steps])


def adam(learning_rate: float, b1: float, b2: float) -> optax.GradientTransformation:
  """Adam whose learning rate lives in its state, to be set by `set_learning_rate`.

  Only the learning rate is in the state: the betas stay the config's, so a
  run resumed with other betas uses them.
  """
  return optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps", "eps_root"))(
      learning_rate=learning_rate, b1=b1, b2=b2)


def set_learning_rate(opt_state: optax.OptState, learning_rate) -> optax.OptState:
  """The state of an `adam` optimiser with its learning rate replaced."""
  hyperparams = dict(opt_state.hyperparams, learning_rate=jnp.asarray(learning_rate, jnp.float32))
  return opt_state._replace(hyperparams=hyperparams)


def make_optimizers(config: ml_collections.ConfigDict):
  """(g_optimizer, d_optimizer, g_schedule, d_schedule) for `config.optim` (TTUR: own lrs)."""
  optim, num_steps = config.optim, config.train.num_steps
  g_schedule = learning_rate_schedule(optim.g_lr, optim.schedule, num_steps, optim.warmup_steps)
  d_schedule = learning_rate_schedule(optim.d_lr, optim.schedule, num_steps, optim.warmup_steps)
  return (adam(optim.g_lr, optim.b1, optim.b2), adam(optim.d_lr, optim.b1, optim.b2),
          g_schedule, d_schedule)
