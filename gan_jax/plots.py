"""`python -m gan_jax.plots`: the command line of gan_jax/monitor/plots.py (docs name it so)."""

import sys

from gan_jax.monitor.plots import main

if __name__ == "__main__":
  sys.exit(main())
