"""Trained generators: loading, latents, generation, walks, projection, nearest faces."""
