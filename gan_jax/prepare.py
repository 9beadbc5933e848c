"""`python -m gan_jax.prepare`: the command line of gan_jax/data/prepare.py (docs name it so)."""

import sys

from gan_jax.data.prepare import main

if __name__ == "__main__":
  sys.exit(main())
