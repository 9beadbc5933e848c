"""The PyTorch residual reference (benchmarks/torch_resnet.py) builds gan_jax's resnet32
networks: the same parameters and, with gan_jax's weights copied in, the same outputs; its
timed iteration runs in both CPU modes. PyTorch is not a gan_jax dependency: skipped without it.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_ROOT
from configs import resnet32
from gan_jax.training import family

torch = pytest.importorskip("torch", reason="PyTorch is not a gan_jax dependency")
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import torch_reference  # noqa: E402  pylint: disable=wrong-import-position
import torch_resnet  # noqa: E402  pylint: disable=wrong-import-position

WIDTH, LATENT, BATCH = 8, 16, 4


def flax_networks():
  """gan_jax's resnet32 G and D, narrowed, float32 products; their training-forward variables."""
  config = resnet32.get_config()
  config.model.width, config.model.latent_dim = WIDTH, LATENT
  config.train.conv_dtype = "float32"
  G, D = family.build_networks(config)
  g_vars = G.init(jax.random.key(0), jnp.zeros((BATCH, LATENT)))
  d_vars = D.init(jax.random.key(1), jnp.zeros((BATCH, 32, 32, 3)))
  return G, D, g_vars, d_vars


def torch_name(path) -> str:
  """('up0', 'conv0', 'kernel') -> 'blocks.0.conv0.weight'."""
  names = [key.key for key in path]
  if names[0][:-1] in ("up", "down"):
    names[:1] = ["blocks", names[0][-1]]
  names[-1] = {"kernel": "weight", "scale": "weight"}.get(names[-1], names[-1])
  return ".".join(names)


def torch_tensor(name: str, value: np.ndarray) -> torch.Tensor:
  """A flax parameter in PyTorch's layout (HWIO -> OIHW, (in, out) -> (out, in))."""
  value = np.asarray(value)
  if name.startswith("project."):  # outputs (h, w, c) in flax, (c, h, w) in torch's view
    value = value.reshape(-1, 4, 4, WIDTH).transpose(0, 3, 1, 2).reshape(value.shape)
  if value.ndim == 4:
    value = value.transpose(3, 2, 0, 1)
  elif value.ndim == 2:
    value = value.T
  return torch.from_numpy(np.array(value))  # a writable copy


def load(module, params, divisors=None) -> None:
  """Copy flax `params` into `module`, each kernel divided by its `divisors` entry if any."""
  state = {}
  for path, value in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = torch_name(path)
    divisor = (divisors or {}).get(name, 1.0) if path[-1].key == "kernel" else 1.0
    state[name] = torch_tensor(name, value / divisor)
  missing, unexpected = module.load_state_dict(state, strict=False)
  assert not unexpected and all("running" in m or "num_batches" in m for m in missing), missing


def sigmas(batch_stats) -> dict:
  """{torch weight name: the spectral norm the flax forward divided that kernel by}."""
  found = {}
  for path, value in jax.tree_util.tree_flatten_with_path(batch_stats)[0]:
    if path[-1].key.endswith("/sigma"):
      layer = path[-1].key.split("/")[0]
      found[torch_name([*path[:-2], jax.tree_util.DictKey(layer), jax.tree_util.DictKey("kernel")])
            ] = float(value)
  return found


def test_parameter_counts_equal_gan_jax():
  torch_g, torch_d = torch_resnet.build(32)
  count = lambda module: sum(p.numel() for p in module.parameters())
  # python -m gan_jax.models --config configs/resnet32.py
  assert (count(torch_g), count(torch_d)) == (368_195, 268_929)


def test_forwards_equal_gan_jax_with_its_weights():
  G, D, g_vars, d_vars = flax_networks()
  z = np.random.RandomState(0).randn(BATCH, LATENT).astype(np.float32)
  fake, _ = G.apply(g_vars, z, train=True, mutable=["batch_stats"])
  logits, d_stats = D.apply(d_vars, fake, train=True, mutable=["batch_stats"])

  torch_g = torch_resnet.Generator(32, LATENT, WIDTH).train()
  load(torch_g, g_vars["params"])
  torch_d = torch_resnet.Discriminator(32, WIDTH)  # the kernels flax normalised, loaded as they are
  load(torch_d, d_vars["params"], sigmas(d_stats["batch_stats"]))
  with torch.no_grad():
    torch_fake = torch_g(torch.from_numpy(z))
    torch_logits = torch_d(torch.from_numpy(np.asarray(fake)).permute(0, 3, 1, 2))
  np.testing.assert_allclose(torch_fake.permute(0, 2, 3, 1).numpy(), fake, atol=1e-5)
  np.testing.assert_allclose(torch_logits.numpy(), logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
def test_resnet_iteration_trains_both_networks(mode):
  step = torch_reference.Iteration(32, 2, mode, torch.device("cpu"), model="resnet")
  # Every weight moves (D's logit bias need not: at logits inside the hinge margins its
  # real and fake gradients cancel).
  weights = [p for p in (*step.G.parameters(), *step.D.parameters()) if p.ndim > 1]
  before = [w.detach().clone() for w in weights]
  spectral = step.D.blocks[1].conv0.parametrizations.weight[0]
  u = spectral._u.clone()  # pylint: disable=protected-access
  d_loss, g_loss = step()
  assert np.isfinite(d_loss.item()) and np.isfinite(g_loss.item())
  assert all(not torch.equal(b, w) for b, w in zip(before, weights))
  # The power iteration advanced in the training forwards.
  assert not torch.equal(u, spectral._u)  # pylint: disable=protected-access
