"""Faces on disk -> prepared uint8 arrays -> seeded batches (knows nothing of models)."""
