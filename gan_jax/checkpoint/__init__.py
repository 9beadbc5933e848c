"""Orbax checkpoints of the whole GAN state, the data position and the config.

A checkpoint is one Orbax step directory with three items:
  state   -- every array of GANState (the typed PRNG key saved as its raw key data)
  data    -- the input pipeline position (JSON); batches are a function of the step
  config  -- the run's config (JSON), so that generation tools need only the workdir

Saves are asynchronous and atomic (written to `<step>.orbax-checkpoint-tmp`,
then renamed), and only the last `checkpoint_keep` are kept. Restores place the
arrays on the shardings the caller asks for, so a run may resume on another
number of devices. A damaged latest checkpoint is skipped for the one before.

  trees.py     the state as a tree of plain arrays; fingerprints
  manager.py   the CheckpointManager: save, restore, restore_tree, load_config
  fallback.py  which step to restore; falling back past (and moving aside) damaged ones
  __main__.py  python -m gan_jax.checkpoint list WORKDIR
               python -m gan_jax.checkpoint fingerprint WORKDIR [--step N]

Which config options a resumed run may change is `gan_jax.config.resume`;
loading a trained generator to sample from is `gan_jax.explore.loader.load`.
"""

from __future__ import annotations

from gan_jax.checkpoint.fallback import DAMAGED_DIR, restore_with_fallback, saved_steps
from gan_jax.checkpoint.manager import (CHECKPOINT_DIR, check_fits, list_checkpoints, load_config,
                                        make_manager, restore, restore_config, restore_state_item,
                                        restore_tree, save)
from gan_jax.checkpoint.trees import (abstract_state, fingerprint, host_array, named_leaves,
                                      path_name, state_to_tree, state_to_tree_abstract,
                                      tree_to_state)
from gan_jax.errors import CheckpointError

__all__ = [
    "CHECKPOINT_DIR", "DAMAGED_DIR", "CheckpointError", "abstract_state", "check_fits",
    "fingerprint", "host_array", "list_checkpoints", "load_config", "make_manager", "named_leaves",
    "path_name", "restore", "restore_config", "restore_state_item", "restore_tree",
    "restore_with_fallback", "save", "saved_steps", "state_to_tree", "state_to_tree_abstract",
    "tree_to_state",
]
