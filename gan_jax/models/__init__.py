"""The networks of each model family: one module per family here.

A family's module has
  check(config)             raise errors.ConfigError for options it cannot build
  build(config, axis_name)  its (generator, discriminator) Flax modules
and its entry in gan_jax/training/family.py FAMILIES, the one table of families
(docs/architecture.md, "Adding a model family"). Models know nothing of
training: the trainer passes the name of the mapped axis over which batch norm
averages its statistics. Layers more than one family uses are in layers.py.
"""
