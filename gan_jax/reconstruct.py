"""`python -m gan_jax.reconstruct`: the command line of gan_jax/explore/reconstruct.py."""

import sys

from gan_jax.explore.reconstruct import main

if __name__ == "__main__":
  sys.exit(main())
