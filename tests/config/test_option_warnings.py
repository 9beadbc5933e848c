"""Options set to no effect: one start-up warning line each (config/no_effect.py), and
interpolate's --truncation with --latents."""

import numpy as np
import pytest

from configs import tiny
from gan_jax import start
from gan_jax.config import defaults, no_effect
from gan_jax.errors import UserError
from gan_jax.explore import interpolate


def warnings_for(**options):
  """The warning lines of tiny's config with `options` ('section.key': value) set."""
  config = tiny.get_config()
  for name, value in options.items():
    section, key = name.split(".")
    config[section][key] = value
  return no_effect.option_warnings(config)


def test_every_shipped_config_has_no_inert_option():
  assert no_effect.option_warnings(defaults.get_config()) == []
  assert warnings_for() == []  # tiny sets only options that act


@pytest.mark.parametrize("options,expected", [
    ({"loss.gp_weight": 5.0},
     "loss.gp_weight=5.0 has no effect: only loss.name=wgan-gp adds the gradient penalty"),
    ({"loss.r1_every": 16}, "loss.r1_every=16 has no effect with loss.r1_gamma=0"),
    ({"train.ema_rampup": True},
     "train.ema_rampup=True has no effect with train.ema_decay=0 (no EMA of G)"),
    ({"train.ema_batch_stats": "recompute"},
     "train.ema_batch_stats=recompute has no effect with train.ema_decay=0 (no EMA of G)"),
    ({"train.ema_decay": 0.999, "train.ema_batch_stats": "recompute", "model.g_batch_norm": False},
     "train.ema_batch_stats=recompute has no effect with model.g_batch_norm=False"),
    ({"train.instance_noise_steps": 500},
     "train.instance_noise_steps=500 has no effect with train.instance_noise=0"),
    ({"train.conv_dtype": "float32"}, "train.conv_dtype=float32 has no effect: it is train.dtype"),
    ({"model.d_minibatch_std_group": 2},
     "model.d_minibatch_std_group=2 has no effect with model.d_minibatch_std=False"),
    ({"data.pipeline": "numpy", "data.device_budget_mb": 100},
     "data.device_budget_mb=100 has no effect with data.pipeline=numpy"),
    ({"eval.num_samples": 500, "eval.features": "pixels"},
     "eval.num_samples, eval.features have no effect with eval.every=0"),
    ({"monitor.d_fake_threshold": 0.0, "monitor.patience": 3},
     "monitor.patience=3 has no effect with monitor.d_fake_threshold=0"),
    ({"loss.name": "wgan-gp", "model.d_batch_norm": False, "monitor.d_fake_threshold": 0.1},
     "monitor.d_fake_threshold has no effect with loss.name=wgan-gp"),
    ({"monitor.stop_on_collapse": True, "monitor.d_fake_threshold": 0.0,
      "monitor.diversity_fraction": 0.0},
     "monitor.stop_on_collapse has no effect: both collapse detectors are off"),
    ({"loss.lecam_decay": 0.9}, "loss.lecam_decay has no effect with loss.lecam_weight=0"),
    ({"loss.bcr_augment": "color"}, "loss.bcr_augment has no effect with loss.bcr_real=0"),
    ({"augment.ada_interval": 8, "augment.ada_kimg": 100.0},
     "augment.ada_interval, augment.ada_kimg have no effect with augment.ada_target=0"),
    ({"train.ema_stats_batches": 4},
     "train.ema_stats_batches has no effect with train.ema_batch_stats other than recompute"),
    ({"loss.kl_weight": 1.0}, "loss.kl_weight has no effect with model.name other than vaegan"),
])
def test_each_rule_warns_once(options, expected):
  lines = warnings_for(**options)
  assert len(lines) == 1 and lines[0].startswith(expected), lines


@pytest.mark.parametrize("options", [
    {"loss.name": "wgan-gp", "model.d_batch_norm": False, "loss.gp_weight": 5.0},
    {"loss.r1_gamma": 1.0, "model.d_batch_norm": False, "loss.r1_every": 16},
    {"train.ema_decay": 0.999, "train.ema_rampup": True},
    {"train.ema_decay": 0.999, "train.ema_batch_stats": "recompute"},
    {"train.instance_noise": 0.1, "train.instance_noise_steps": 500},
    {"train.conv_dtype": "bfloat16"},
    {"model.d_minibatch_std": True, "model.d_minibatch_std_group": 2},
    {"data.device_budget_mb": 100},
    {"eval.every": 100, "eval.num_samples": 500},
    {"loss.gp_weight": 10.0, "train.ema_rampup": False},  # the defaults, written out
    {"loss.lecam_weight": 0.3, "loss.lecam_decay": 0.9},
    {"loss.bcr_real": 1.0, "loss.bcr_augment": "color"},
    {"augment.ada_target": 0.6, "augment.ada_interval": 8},
])
def test_options_that_act_do_not_warn(options):
  assert warnings_for(**options) == []


def test_training_logs_the_warnings_at_start_up(tmp_path, caplog):
  config = tiny.get_config()
  config.loss.r1_every, config.train.ema_rampup = 4, True
  config.data.path = str(tmp_path / "no_faces_here")
  with pytest.raises(UserError):  # stops at the data, after the start-up lines
    start.run(config, str(tmp_path / "run"))
  assert "loss.r1_every=4 has no effect" in caplog.text
  assert "train.ema_rampup=True has no effect" in caplog.text


@pytest.mark.parametrize("truncation", [None, "0.7"])
def test_interpolate_warns_that_truncation_leaves_latent_files_alone(truncation, tmp_path, capsys):
  np.save(tmp_path / "a.npy", np.zeros(16, np.float32))
  argv = ["--workdir", str(tmp_path / "no_run"), "--latents", str(tmp_path / "a.npy"),
          "--out", str(tmp_path / "walk.gif")]
  if truncation:
    argv += ["--truncation", truncation]
  assert interpolate.main(argv) == 1  # no checkpoint there: the warning comes first
  stderr = capsys.readouterr().err
  assert (interpolate.TRUNCATION_WITH_LATENTS in stderr) == bool(truncation)
  assert "error:" in stderr.splitlines()[-1]
