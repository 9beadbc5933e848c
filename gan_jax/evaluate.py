"""`python -m gan_jax.evaluate`: the command line of gan_jax/eval/evaluate.py (docs name it so)."""

import sys

from gan_jax.eval.evaluate import main

if __name__ == "__main__":
  sys.exit(main())
