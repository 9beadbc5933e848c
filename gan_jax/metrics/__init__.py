"""Evaluation metrics: Fréchet distances, FID/KID, precision/recall, embedding tests."""
