"""Config checks, command-line option handling and the resume policy."""
