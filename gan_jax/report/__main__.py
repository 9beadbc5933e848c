"""`python -m gan_jax.report`: the command line of gan_jax/report/command.py."""

import sys

from gan_jax.report.command import main

if __name__ == "__main__":
  sys.exit(main())
