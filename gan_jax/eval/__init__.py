"""FID/KID of checkpoints and during training (the metrics themselves live in gan_jax/metrics)."""
