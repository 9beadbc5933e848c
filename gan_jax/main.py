"""Train a GAN: `python -m gan_jax.main --config configs/ffhq64.py --workdir runs/x`.

Any config option can be overridden, e.g. `--config.train.batch_size=256`.
The console shows the run's own lines (and a progress bar on a terminal) and
names the config file and its overrides; every record, the full config and
libraries' INFO included, goes to WORKDIR/log.txt; `--verbose` shows the
libraries' records on the console too. The start itself (checks, lock, log
file, run record, then the loop) is `gan_jax.start.run`.
"""

from absl import app, flags

from gan_jax import cli, console, distributed, start, train
from gan_jax.config import options

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory for samples, logs and checkpoints.")
options.define_config_flag("Training configuration file (configs/*.py, or your own), by any "
                           "path.")
flags.mark_flags_as_required(["config", "workdir"])
flags.DEFINE_bool("verbose", False, "Also show the libraries' INFO records (Orbax, JAX, ...) on "
                  "the console; WORKDIR/log.txt has them either way.")
# Multi-process runs, one process per host (default: GAN_JAX_* or SLURM variables, else one).
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0, reachable by all.")
flags.DEFINE_integer("num_processes", None, "How many processes (hosts) take part.")
flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes-1.")


# What a user can cause (multi-process flags, options that do not fit, a bad data path or image
# set, a checkpoint of another config, losses that went NaN): one line that says what to change.
@cli.exit_on_user_error()
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # Before anything starts a JAX backend: XLA reads its flags only then.
  train.use_deterministic_ops(FLAGS.config)
  run_console = console.Console(verbose=FLAGS.verbose)  # before anything else logs
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  start.run(FLAGS.config, FLAGS.workdir, run_console, options.config_source(FLAGS["config"]))


if __name__ == "__main__":
  cli.run_absl(main, flags_parser=options.parse_flags)
