"""Seeded fingerprints of a few steps of every training technique, for restructures of the step.

  JAX_PLATFORMS=cpu python benchmarks/technique_fingerprints.py > before.txt
  ... change the code ...
  JAX_PLATFORMS=cpu python benchmarks/technique_fingerprints.py | diff before.txt -

The tiny config (16 px) runs 4 steps on seeded random images on one device for each
combination below and prints the sha256 of the state it ends with and of its metrics.
Every technique is on in at least one combination, most in several together, so a
change that moves a key, reorders a sum or drops a term shows as a changed line.
benchmarks/restructure_fingerprints.sh does the same for two whole runs on real faces.
"""

from __future__ import annotations

import hashlib
import sys

import jax
import numpy as np

sys.path.insert(0, ".")
from configs import tiny  # noqa: E402
from gan_jax import parallel  # noqa: E402
from gan_jax.checkpoint import trees  # noqa: E402
from gan_jax.training import family  # noqa: E402

AUGMENT = {"augment.policy": "color,translation,cutout"}
COMBINATIONS = {
    "plain": {},
    "diffaugment_ema": {**AUGMENT, "train.ema_decay": 0.99, "train.ema_rampup": True},
    "ada_lecam_bcr": {**AUGMENT, "augment.ada_target": 0.6, "augment.ada_interval": 2,
                      "augment.ada_kimg": 1.0, "loss.lecam_weight": 0.3, "loss.bcr_real": 1.0,
                      "loss.bcr_fake": 1.0, "model.d_batch_norm": False},
    "r1_lazy_lecam": {"loss.r1_gamma": 1.0, "loss.r1_every": 2, "loss.lecam_weight": 0.1,
                      "model.d_batch_norm": False, "loss.name": "hinge"},
    "wgan_gp_steps": {"loss.name": "wgan-gp", "model.d_batch_norm": False, "train.d_steps": 2,
                      "train.g_steps": 2, "loss.r1_gamma": 0.5},
    "noise_labels_balance": {"train.instance_noise": 0.1, "train.instance_noise_steps": 3,
                             "loss.real_label": 0.9, "loss.flip_prob": 0.1,
                             "train.balance_margin": 0.05},
    "ada_steps_lsgan": {**AUGMENT, "augment.ada_target": 0.2, "augment.ada_interval": 1,
                        "augment.ada_kimg": 0.5, "loss.name": "lsgan", "train.d_steps": 2,
                        "train.g_steps": 2, "loss.bcr_fake": 0.5},
    "vaegan": {"model.name": "vaegan", **AUGMENT, "train.instance_noise": 0.1,
               "loss.real_label": 0.9, "train.ema_decay": 0.9},
}


def fingerprint(overrides: dict, num_steps: int = 4) -> tuple[str, str]:
  config = tiny.get_config()
  config.train.conv_dtype = ""
  for name, value in overrides.items():
    section, option = name.split(".")
    config[section][option] = value
  gan = family.bundle(config)
  runner = parallel.DataParallel(family.make_train_step(gan), "shard_map",
                                 parallel.make_mesh(jax.devices()[:1]))
  state = runner.put_state(family.create_state(gan, jax.random.key(config.seed)))
  key = runner.put_key(jax.random.key(1))
  images = np.random.default_rng(0).integers(
      0, 256, (num_steps, config.train.batch_size, 16, 16, 3), dtype=np.uint8)
  metrics_hash = hashlib.sha256()
  for step in range(num_steps):
    state, metrics = runner.step(state, runner.put_batch(images[step]), key)
    for name, value in sorted(runner.get_metrics(metrics).items()):
      metrics_hash.update(f"{name}={np.float32(value).tobytes().hex()};".encode())
  return trees.fingerprint(runner.get_state(state)), metrics_hash.hexdigest()


def main() -> None:
  for name, overrides in COMBINATIONS.items():
    state_hash, metrics_hash = fingerprint(overrides)
    print(f"{name} state {state_hash[:16]} metrics {metrics_hash[:16]}", flush=True)


if __name__ == "__main__":
  main()
