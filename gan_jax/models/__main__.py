"""Print the parameter counts of a config's networks.

`python -m gan_jax.models --config configs/ffhq64.py`
"""

import jax
from absl import app, flags

from gan_jax import cli
from gan_jax.config import checks, options
from gan_jax.training import family
from gan_jax.training.state import param_count

options.define_config_flag("Configuration file (configs/*.py, or your own), by any path.")
flags.mark_flags_as_required(["config"])


@cli.exit_on_user_error()  # options that build no network: one line
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = flags.FLAGS.config
  checks.validate_config(config)
  gan = family.bundle(config)
  state = jax.eval_shape(lambda: family.create_state(gan, jax.random.key(0)))
  g, d = param_count(state.g_params), param_count(state.d_params)
  print(f"resolution {config.data.resolution}, latent {config.model.latent_dim}, "
        f"width {config.model.width}")
  print(f"generator:     {g:>12,d} parameters")
  print(f"discriminator: {d:>12,d} parameters")
  if family.of(config).has_encoder:  # a VAE-GAN
    print(f"encoder:       {param_count(state.e_params):>12,d} parameters")


if __name__ == "__main__":
  cli.run_absl(main, flags_parser=options.parse_flags)
