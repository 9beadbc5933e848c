"""`python -m gan_jax.project`: the command line of gan_jax/explore/project.py (docs name it so)."""

import sys

from gan_jax.explore.project import main

if __name__ == "__main__":
  sys.exit(main())
