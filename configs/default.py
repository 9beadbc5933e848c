"""Every option with its default: gan_jax/config/defaults.py, where the table lives.

This file lets `--config configs/default.py` name the defaults as before; a
config of your own starts from `from gan_jax.config import defaults` and
`defaults.get_config()`, which works from any folder.
"""

from gan_jax.config.defaults import get_config  # noqa: F401  (what --config loads)
