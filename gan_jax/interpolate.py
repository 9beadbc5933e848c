"""`python -m gan_jax.interpolate`: the command line of gan_jax/explore/interpolate.py (docs name it so)."""

import sys

from gan_jax.explore.interpolate import main

if __name__ == "__main__":
  sys.exit(main())
