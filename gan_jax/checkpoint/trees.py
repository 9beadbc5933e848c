"""The GAN state as a tree of plain arrays, its leaves by name, and its fingerprint.

A checkpoint stores `state_to_tree(state)`: every field of GANState, the typed
PRNG key as its raw uint32 key data. `fingerprint` hashes such a tree (or a
GANState) so that two runs, or a run and its checkpoint, compare in one line.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from gan_jax.training import family
from gan_jax.training.state import GANState


def _fields(state: GANState) -> dict[str, Any]:
  """Every field but `techniques`, then each technique's state under its name: a run
  without such techniques has the tree of a checkpoint written before they existed."""
  tree = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)
          if f.name != "techniques"}
  techniques = state.techniques or {}
  clash = set(tree) & set(techniques)
  if clash:
    raise ValueError(f"technique states named like state fields: {sorted(clash)}")
  return {**tree, **techniques}


def state_to_tree(state: GANState) -> dict[str, Any]:
  """GANState as a plain dict of arrays (typed key -> uint32 key data)."""
  tree = _fields(state)
  tree["key"] = jax.random.key_data(state.key)
  return tree


def tree_to_state(tree: dict[str, Any], state_class: type[GANState] = GANState) -> GANState:
  """The inverse of `state_to_tree`, into `state_class` (the family's, by its model.name:
  training/family.py); the entries that are no field are the techniques' states."""
  names = {f.name for f in dataclasses.fields(state_class)}
  fields = {name: value for name, value in tree.items() if name in names}
  fields["key"] = jax.random.wrap_key_data(fields["key"])
  fields["techniques"] = {name: value for name, value in tree.items() if name not in names}
  return state_class(**fields)


def state_to_tree_abstract(abstract_state: GANState) -> dict[str, Any]:
  """The abstract counterpart of `state_to_tree` (key -> uint32 key-data struct)."""
  tree = _fields(abstract_state)
  key = abstract_state.key
  key_data = jax.eval_shape(jax.random.key_data, key)
  tree["key"] = jax.ShapeDtypeStruct(key_data.shape, key_data.dtype,
                                     sharding=getattr(key, "sharding", None))
  return tree


def abstract_state(gan, config: ml_collections.ConfigDict, sharding=None) -> GANState:
  """Shapes and dtypes of the state `create_state` makes, placed on `sharding`."""
  shapes = jax.eval_shape(lambda key: family.create_state(gan, key), jax.random.key(config.seed))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def path_name(path: Sequence[Any]) -> str:
  """'g_opt_state/0/mu/up0/kernel': the same for a GANState, a dict and Orbax metadata."""
  parts = []
  for key in path:
    for attribute in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey
      if hasattr(key, attribute):
        parts.append(str(getattr(key, attribute)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def named_leaves(tree: Any) -> dict[str, Any]:
  """{path name: leaf} of every leaf of `tree`."""
  return {path_name(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def host_array(x: Any) -> np.ndarray:
  """A leaf as one numpy array (also for arrays spread over several hosts)."""
  if isinstance(x, jax.Array):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    if not x.is_fully_addressable:
      if x.is_fully_replicated:
        x = x.addressable_data(0)
      else:
        from jax.experimental import multihost_utils
        x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(jax.device_get(x))


def fingerprint(tree: Any) -> str:
  """sha256 over every array of `tree`: path, dtype, shape and bytes, sorted by path.

  A GANState and the tree restored from its checkpoint give the same value.
  Arrays split over several hosts are gathered first, so with more than one
  process every process must call this (and all get the same digest).
  """
  if isinstance(tree, GANState):
    tree = state_to_tree(tree)
  digest = hashlib.sha256()
  for name, leaf in sorted(named_leaves(tree).items()):
    array = np.ascontiguousarray(host_array(leaf))
    digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()
