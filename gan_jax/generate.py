"""`python -m gan_jax.generate`: the command line of gan_jax/explore/generate.py (docs name it so)."""

import sys

from gan_jax.explore.generate import main

if __name__ == "__main__":
  sys.exit(main())
