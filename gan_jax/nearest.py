"""`python -m gan_jax.nearest`: the command line of gan_jax/explore/nearest.py (docs name it so)."""

import sys

from gan_jax.explore.nearest import main

if __name__ == "__main__":
  sys.exit(main())
