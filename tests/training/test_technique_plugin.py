"""A technique added from outside the package: a fixture registers a trivial penalty
(weight * mean(D(x)^2) on the reals, with a step counter as its state) and the step,
the checks, the option warnings, the family's refusal and the checkpoints take it with
no change to any file of gan_jax/training (docs/architecture.md, "Adding a technique")."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from gan_jax import checkpoint, parallel
from gan_jax.config import checks, no_effect
from gan_jax.errors import ConfigError
from gan_jax.training import family, techniques
from gan_jax.training import step as train_step


@dataclasses.dataclass(frozen=True)
class RealLogitPenalty(techniques.Technique):
  """weight * mean(D(x)^2) on the reals; counts the steps it ran in its state."""
  name = "real_logit_penalty"
  switch = "loss.real_logit_penalty"
  weight: float

  @classmethod
  def from_config(cls, config):
    return cls(config.loss.real_logit_penalty) if config.loss.real_logit_penalty else None

  @staticmethod
  def check(config):
    if config.loss.real_logit_penalty < 0:
      raise ConfigError(f"loss.real_logit_penalty={config.loss.real_logit_penalty} must be >= 0")

  @staticmethod
  def inert_options(options):
    if options["loss.real_logit_penalty"] and options["loss.name"] == "wgan-gp":
      return ["loss.real_logit_penalty has no effect here (a test's rule)"]
    return []

  def initial_state(self):
    return {"steps": jnp.zeros((), jnp.int32)}

  def d_penalty(self, d_round):
    return self.weight * jnp.mean(jnp.square(d_round.real_logits.astype(jnp.float32)))

  def next_state(self, own, real_logits, fake_logits, step):
    return {"steps": own["steps"] + 1}


@pytest.fixture(name="registered")
def fixture_registered():
  techniques.register(RealLogitPenalty)
  yield RealLogitPenalty
  techniques.unregister(RealLogitPenalty)


def make_config(weight=0.5, **overrides):
  """configs/tiny.py at 8 px, batch 8, with the technique's own option (beside the defaults)."""
  return tiny_config(data__resolution=8, train__batch_size=8, loss__real_logit_penalty=weight,
                     **overrides)


def test_the_step_adds_the_penalty_and_moves_its_state(registered, tmp_path):
  config = make_config()
  checks.validate_config(config)
  gan = family.bundle(config)
  assert [type(t) for t in gan.techniques] == [registered]
  runner = parallel.DataParallel(family.make_train_step(gan), "shard_map",
                                 parallel.make_mesh(jax.devices()[:1]))
  state = runner.put_state(family.create_state(gan, jax.random.key(0)))
  assert {"real_logit_penalty"} == set(state.techniques)
  batch = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
  key = runner.put_key(jax.random.key(1))
  for _ in range(2):
    state, metrics = runner.step(state, runner.put_batch(batch), key)
  metrics = runner.get_metrics(metrics)
  # The penalty is in D's loss and logged; its state counted both steps.
  assert metrics["d_penalty"] > 0
  assert int(state.techniques["real_logit_penalty"]["steps"]) == 2
  # Its state is saved under its name and restored.
  manager = checkpoint.make_manager(tmp_path)
  checkpoint.save(manager, runner.get_state(state), {"step": 2}, config)
  manager.wait_until_finished()
  assert "real_logit_penalty" in checkpoint.state_to_tree(runner.get_state(state))
  restored, _ = checkpoint.restore(checkpoint.make_manager(tmp_path, read_only=True),
                                   checkpoint.abstract_state(gan, config), config=config)
  assert checkpoint.fingerprint(restored) == checkpoint.fingerprint(runner.get_state(state))


def test_d_loss_is_the_gan_loss_plus_the_weighted_term(registered):
  gan = family.bundle(make_config(weight=0.25))
  state = family.create_state(gan, jax.random.key(0))
  real = jax.random.uniform(jax.random.key(2), (8, 8, 8, 3), minval=-1.0, maxval=1.0)
  fake = jax.random.uniform(jax.random.key(3), (8, 8, 8, 3), minval=-1.0, maxval=1.0)

  def d_loss(real, fake):
    return train_step.d_loss(gan, state.d_params, state.d_batch_stats, real, fake,
                             jax.random.key(4), jnp.int32(0), jax.random.key(5),
                             state.techniques)

  total, aux = jax.vmap(d_loss, axis_name=parallel.BATCH_AXIS)(real[None], fake[None])
  expected = 0.25 * jnp.mean(jnp.square(aux.real_logits[0]))
  np.testing.assert_allclose(aux.penalty[0], expected, rtol=1e-6)
  np.testing.assert_allclose(total[0], aux.loss[0] + expected, rtol=1e-6)


def test_its_check_warning_and_family_refusal(registered):
  with pytest.raises(ConfigError, match=r"^loss.real_logit_penalty=-1.0 must be >= 0$"):
    checks.validate_config(make_config(weight=-1.0))
  warned = make_config(loss__name="wgan-gp", model__d_batch_norm=False)
  assert "loss.real_logit_penalty has no effect here (a test's rule)" in (
      no_effect.option_warnings(warned))
  # The VAE-GAN's step runs no penalties: the family refuses it, naming its option.
  with pytest.raises(ConfigError, match=r"^model.name=vaegan does not train with "
                                        r"loss.real_logit_penalty; "):
    checks.validate_config(make_config(model__name="vaegan", model__feature_block=1))


def test_off_it_is_not_built_and_unregistered_it_is_gone(registered):
  assert family.bundle(make_config(weight=0.0)).techniques == ()
  techniques.unregister(registered)
  try:
    assert registered not in techniques.TECHNIQUES
  finally:
    techniques.register(registered)  # for the fixture's own unregister
