"""`python -m gan_jax.input_pipeline`: the command line of gan_jax/data/pipeline.py (docs name it so)."""

import sys

from gan_jax.data.pipeline import main

if __name__ == "__main__":
  sys.exit(main())
