"""gan_jax: face-generating GANs in JAX/Flax."""

__version__ = "0.1.0"
