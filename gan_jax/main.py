"""Train a GAN: `python -m gan_jax.main --config configs/ffhq64.py --workdir runs/x`.

Any config option can be overridden, e.g. `--config.train.batch_size=256`.
The console shows the run's own lines (and a progress bar on a terminal); every
record, libraries' INFO included, goes to WORKDIR/log.txt; `--verbose` shows
them all on the console too.
"""

import jax
from absl import app, flags, logging

from gan_jax import cli, console, distributed, train, workdir_lock
from gan_jax.config import checks, options

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
  # A config that cannot train stops before the workdir gets a lock, a log file or run.json.
  checks.check_start(FLAGS.config, jax.device_count())
  # The workdir's lock before its log file: a run refused here (another one trains in this
  # workdir) writes nothing there, its records wait in memory and are dropped. train.py takes
  # the lock again; in this thread that is a no-op (workdir_lock.hold).
  with workdir_lock.hold(FLAGS.workdir):
    run_console.log_to_file(FLAGS.workdir, jax.process_index())
    # TensorFlow (tf.data, TensorBoard) prints its C++ INFO lines at import: into the log file.
    run_console.import_quietly("tensorflow")
    logging.info("%s", distributed.describe())
    if jax.process_index() != 0:
      run_console.show_warnings_only()  # one console to read; warnings still come from all
    logging.info("config:\n%s", FLAGS.config)
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  cli.run_absl(main, flags_parser=options.parse_flags)
