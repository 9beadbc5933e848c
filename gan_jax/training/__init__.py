"""The GAN bundle (networks, optimisers, loss, techniques), its state and the pure train step."""
