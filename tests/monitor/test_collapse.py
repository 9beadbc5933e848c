"""Collapse detectors: the statistics, the rules, and a tiny run built to collapse."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from gan_jax import train
from gan_jax.monitor import collapse


def test_mean_pairwise_distance():
  same = jnp.ones((4, 2, 2, 3))
  assert float(collapse.mean_pairwise_distance(same)) == 0.0
  # Three images: all -1, all 0, all +1 over 12 pixels -> distances sqrt(12), sqrt(12), 2 sqrt(12).
  three = jnp.stack([jnp.full((2, 2, 3), v) for v in (-1.0, 0.0, 1.0)])
  expected = 4 * np.sqrt(12) / 3
  assert float(collapse.mean_pairwise_distance(three)) == pytest.approx(expected, rel=1e-5)
  # uint8 images are measured in the generator's [-1, 1] scale.
  as_uint8 = jnp.asarray([[[[0] * 3] * 2] * 2, [[[255] * 3] * 2] * 2], jnp.uint8)
  assert float(collapse.mean_pairwise_distance(as_uint8)) == pytest.approx(2 * np.sqrt(12))


def logs(*pairs):
  return [{"d_fake": d_fake, "g_loss": g_loss} for d_fake, g_loss in pairs]


def test_d_overpowering_needs_patience_and_a_rising_g_loss():
  detector = collapse.DOverpowering(threshold=0.03, patience=3)
  warnings = [detector.update(step, s) for step, s in enumerate(logs(
      (0.4, 1.0), (0.01, 5.0), (0.01, 6.0), (0.02, 7.0), (0.01, 8.0)), start=1)]
  assert warnings[:3] == [None, None, None]
  assert "step 4: discriminator overpowering" in warnings[3]
  assert "lower optim.d_lr" in warnings[3]
  assert warnings[4] is None and detector.active  # one warning per episode
  assert detector.update(6, {"d_fake": 0.5, "g_loss": 1.0}) is None and not detector.active
  # D wins but g_loss falls: the generator is still learning.
  falling = collapse.DOverpowering(threshold=0.03, patience=3)
  assert all(falling.update(s, r) is None for s, r in enumerate(logs(
      (0.01, 8.0), (0.01, 7.0), (0.01, 6.0), (0.01, 5.0))))


@pytest.mark.parametrize("loss", ["lsgan", "hinge"])
def test_d_overpowering_reads_the_share_of_fakes_passing_for_lsgan_and_hinge(loss):
  detector = collapse.DOverpowering(threshold=0.03, patience=3, loss_name=loss)
  assert "share of fakes D classifies as real" in detector.describe()
  # LSGAN's g_loss saturates near 0.5 once D outputs ~0 on fakes: one warning, lasting.
  stream = [(0.90, 0.30), (1.0, 0.45), (0.99, 0.50), (1.0, 0.50), (1.0, 0.49), (1.0, 0.50)]
  warnings = [detector.update(step, {"d_fake_acc": acc, "g_loss": g_loss})
              for step, (acc, g_loss) in enumerate(stream, start=1)]
  assert warnings[:3] == [None, None, None]
  assert "step 4: discriminator overpowering" in warnings[3]
  assert ("label smoothing" in warnings[3]) == (loss == "lsgan")  # hinge has no labels
  assert warnings[4:] == [None, None] and detector.active
  assert detector.update(7, {"d_fake_acc": 0.8, "g_loss": 0.4}) is None and not detector.active


def test_d_overpowering_is_off_for_wgan_gp_and_at_threshold_0():
  wgan = collapse.DOverpowering(threshold=0.03, patience=1, loss_name="wgan-gp")
  assert not wgan.enabled and "off for loss.name=wgan-gp" in wgan.describe()
  assert wgan.update(1, {"d_fake_acc": 1.0, "g_loss": 9.0}) is None and not wgan.active
  off = collapse.DOverpowering(threshold=0.0, patience=1, loss_name="ns")
  assert not off.enabled and "off (monitor.d_fake_threshold=0)" in off.describe()
  assert off.update(1, {"d_fake": 0.0, "g_loss": 9.0}) is None
  assert "mean D(G(z)) < 0.03" in collapse.DOverpowering(0.03, 5, "minimax").describe()
  # A step that logs another loss's metrics is not judged (and does not stop the run).
  assert collapse.DOverpowering(0.03, 1, "lsgan").update(1, {"d_fake": 0.0, "g_loss": 9.0}) is None


def test_mode_collapse_arms_once_samples_were_diverse():
  detector = collapse.ModeCollapse(fraction=0.25, data_diversity=20.0)
  # A new generator's near-identical samples are no collapse.
  assert detector.update(100, 0.1) is None and not detector.active
  assert detector.update(200, 10.0) is None  # ratio 0.5: armed
  warning = detector.update(300, 2.0)
  assert "step 300: mode collapse" in warning and "0.10 times as diverse" in warning
  assert "--config.model.d_minibatch_std=True" in warning
  assert detector.active and detector.update(400, 2.0) is None
  assert detector.update(500, 12.0) is None and not detector.active


@pytest.mark.parametrize("resolution", [8, 64])
def test_identical_real_faces_turn_the_mode_collapse_detector_off(resolution, tmp_path, caplog):
  """A data set of one face repeated has no diversity to compare the samples with: one warning
  line at start-up, and sample steps neither divide by zero nor warn of collapse."""
  from gan_jax.monitor import monitor as monitoring  # pylint: disable=import-outside-toplevel
  face = np.random.default_rng(0).integers(0, 256, (1, resolution, resolution, 3), np.uint8)
  real = np.repeat(face, 16, axis=0)
  config = tiny.get_config()
  with caplog.at_level("INFO"):
    monitor = monitoring.Monitor(config, tmp_path, fetch=lambda x: x, real_images=real,
                                 steps_per_epoch=10)
    samples = np.random.default_rng(1).uniform(-1, 1, (16, resolution, resolution, 3))
    monitor.samples(10, jnp.asarray(samples, jnp.float32))
    monitor.samples(20, jnp.zeros((16, resolution, resolution, 3), jnp.float32))
  off = [r for r in caplog.records if "mode-collapse detector" in r.getMessage()]
  assert [(r.levelname, r.getMessage()) for r in off] == [
      ("WARNING", "the 16 real faces have no diversity (all identical), so the mode-collapse "
                  "detector is off")]
  assert "mode collapse:" not in caplog.text and not monitor.mode_collapse.active
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["collapse/mode_collapse"] for r in records] == [0.0, 0.0]
  assert all("collapse/diversity_ratio" not in r for r in records)
  assert collapse.real_diversity(real) == 0.0
  detector = collapse.ModeCollapse(fraction=0.25, data_diversity=0.0)
  assert not detector.enabled and detector.ratio(5.0) is None
  assert detector.update(100, 5.0) is None and detector.update(200, 0.0) is None


def test_check_finite_names_losses_and_remedies():
  collapse.check_finite(5, {"d_loss": 1.0, "g_loss": 2.0})
  with pytest.raises(collapse.NonFiniteLossError) as error:
    collapse.check_finite(7, {"d_loss": 1.0, "g_loss": float("inf")})
  message = str(error.value)
  assert "step 7: g_loss=inf" in message and "d_loss" not in message.split("(")[0]
  assert "lower learning rates" in message and "train.dtype=float32" in message


@pytest.mark.parametrize("option,value,message", [
    ("d_fake_threshold", 1.5, "monitor.d_fake_threshold=1.5 must be in [0, 1)"),
    ("diversity_fraction", -0.1, "monitor.diversity_fraction=-0.1 must be >= 0"),
])
def test_check_config(option, value, message):
  config = tiny.get_config()
  config.monitor[option] = value
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
    collapse.check_config(config.monitor)


def test_overpowered_discriminator_is_detected_and_stops_training(faces_dir, tmp_path, caplog):
  """D's learning rate x20 and G's x0.05 on real faces: D wins within a few dozen steps."""
  config = tiny.get_config()
  config.data.path, config.data.limit = str(faces_dir), 256
  config.optim.d_lr, config.optim.g_lr = 20 * config.optim.d_lr, 0.05 * config.optim.g_lr
  config.train.num_steps, config.log_every, config.sample_every = 80, 5, 40
  config.checkpoint_every = 1000
  config.monitor.stop_on_collapse = True
  train.train_and_evaluate(config, str(tmp_path))

  assert "discriminator overpowering the generator" in caplog.text
  assert "stopping training: monitor.stop_on_collapse is set" in caplog.text
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  fired = [r for r in records if r.get("collapse/d_overpowering")]
  print("D-overpowering log lines:", [(r["step"], round(r["d_fake"], 4), round(r["g_loss"], 2))
                                      for r in records if "d_fake" in r])
  assert fired and fired[0]["d_fake"] < config.monitor.d_fake_threshold
  assert records[-1]["step"] == fired[0]["step"] < config.train.num_steps  # stopped right there
  assert (tmp_path / "plots" / "losses.png").is_file()  # the plots still get drawn


def test_overpowered_least_squares_discriminator_is_detected(faces_dir, tmp_path, caplog):
  """loss.name=lsgan with D's learning rate x20 and G's x0.05: D rejects every fake within
  ~15 steps and the detector, reading D's accuracy on fakes, stops the run."""
  config = tiny.get_config()
  config.loss.name = "lsgan"
  config.data.path, config.data.limit = str(faces_dir), 256
  config.optim.d_lr, config.optim.g_lr = 20 * config.optim.d_lr, 0.05 * config.optim.g_lr
  config.train.num_steps, config.log_every, config.sample_every = 60, 5, 1000
  config.checkpoint_every = 1000
  config.monitor.stop_on_collapse = True
  train.train_and_evaluate(config, str(tmp_path))

  assert "discriminator overpowering the generator: share of fakes D classifies as real" in (
      caplog.text)
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  logged = [r for r in records if "g_loss" in r]
  print("LSGAN log lines (step, d_fake_acc, d_fake_logit, g_loss):",
        [(r["step"], r["d_fake_acc"], round(r["d_fake_logit"], 3), round(r["g_loss"], 3))
         for r in logged])
  assert "d_fake" not in logged[0] and "d_real" not in logged[0]  # no probabilities for LSGAN
  fired = [r for r in logged if r.get("collapse/d_overpowering")]
  assert fired and fired[0]["d_fake_acc"] > 1 - config.monitor.d_fake_threshold
  assert records[-1]["step"] == fired[0]["step"] < config.train.num_steps
