"""Train a GAN: `python -m gan_jax.main --config configs/ffhq64.py --workdir runs/x`.

Any config option can be overridden, e.g. `--config.train.batch_size=256`.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from gan_jax import train

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory for samples, logs and checkpoints.")
config_flags.DEFINE_config_file("config", None, "Training configuration file (configs/*.py).",
                                lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.info("config:\n%s", FLAGS.config)
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
