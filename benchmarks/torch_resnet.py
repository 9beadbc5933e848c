"""The residual GAN of gan_jax/models/resnet.py in PyTorch: torch_reference.py's `--model resnet`.

The same networks as configs/resnet32.py (and resnet64.py's widths): G projects z
(latent 128) to a 4x4 map, then doubles it with residual up-blocks (BN -> ReLU ->
nearest 2x upsampling -> 3x3 conv -> BN -> ReLU -> 3x3 conv, plus a 1x1-conv
shortcut on the block's input, applied before upsampling) and ends in BN -> ReLU ->
3x3 conv -> tanh; convolutions followed by batch norm have no bias. D halves the image
with residual down-blocks (ReLU -> 3x3 conv -> ReLU -> 3x3 conv -> 2x2 average
pooling; shortcut: pooling, then a 1x1 conv; the first block without the leading
ReLU), adds one block at 4x4 that keeps the size (its shortcut the identity when the
channels match), then ReLU, a sum over positions and a dense logit. Every conv and
dense layer of D is spectrally normalised, one power iteration per training forward
(torch.nn.utils.parametrizations.spectral_norm, as flax's nn.SpectralNorm with
update_stats). Weights Glorot uniform, biases 0, batch-norm scales N(1, 0.02).

Training as configs/resnet32.py: hinge loss, Adam(b1=0, b2=0.9) at 1e-4 (G) and
4e-4 (D). Its DiffAugment and EMA of G are not built here: compare with
`python -m gan_jax.bench --config configs/resnet32.py --config.augment.policy=
--config.train.ema_decay=0` (benchmarks/cpu_side_by_side.sh does).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

LATENT_DIM = 128
WIDTH = 64
START_SIZE = 4
# Channels / WIDTH of G's 4x4 map and after each up-block; of D after each of its blocks
# (gan_jax/models/resnet.py's G_MULTIPLIERS and D_MULTIPLIERS).
G_MULTIPLIERS = {32: (1, 1, 1, 1), 64: (16, 8, 4, 2, 1)}
D_MULTIPLIERS = {32: (1, 1, 1, 1), 64: (1, 2, 4, 8, 16)}
G_ADAM = dict(lr=1e-4, betas=(0.0, 0.9))
D_ADAM = dict(lr=4e-4, betas=(0.0, 0.9))


def upsample2x(x: torch.Tensor) -> torch.Tensor:
  return F.interpolate(x, scale_factor=2, mode="nearest")


def conv(channels: int, features: int, size: int, bias: bool = True) -> nn.Conv2d:
  """A SAME stride-1 convolution (odd `size`)."""
  return nn.Conv2d(channels, features, size, padding=size // 2, bias=bias)


class UpBlock(nn.Module):
  """(N, C, H, W) -> (N, features, 2H, 2W): BN, ReLU, upsample, conv, BN, ReLU, conv + shortcut."""

  def __init__(self, channels: int, features: int):
    super().__init__()
    # Every block's output feeds a batch norm, whose shift is the bias (as gan_jax).
    self.bn0, self.conv0 = nn.BatchNorm2d(channels), conv(channels, features, 3, bias=False)
    self.bn1, self.conv1 = nn.BatchNorm2d(features), conv(features, features, 3, bias=False)
    self.shortcut = conv(channels, features, 1, bias=False)

  def forward(self, x):
    h = self.conv0(upsample2x(F.relu(self.bn0(x), inplace=True)))
    h = self.conv1(F.relu(self.bn1(h), inplace=True))
    # A 1x1 conv commutes with nearest upsampling: gan_jax convolves the small map too.
    return h + upsample2x(self.shortcut(x))


class DownBlock(nn.Module):
  """(N, C, H, W) -> (N, features, H/2, W/2), or the same size without `downsample`."""

  def __init__(self, channels: int, features: int, first: bool, downsample: bool):
    super().__init__()
    self.first, self.downsample = first, downsample
    self.conv0 = conv(channels, features, 3)
    self.conv1 = conv(features, features, 3)
    self.shortcut = conv(channels, features, 1) if downsample or channels != features else None

  def forward(self, x):
    # Not in place: x is the shortcut's input too.
    h = self.conv0(x if self.first else F.relu(x))
    h = self.conv1(F.relu(h, inplace=True))
    shortcut = x
    if self.downsample:
      # Pooling before the 1x1 conv: the same maths, 4x cheaper (as gan_jax).
      h, shortcut = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
    if self.shortcut is not None:
      shortcut = self.shortcut(shortcut)
    return h + shortcut


class Generator(nn.Module):
  """z (N, latent) -> images (N, 3, R, R) in [-1, 1]."""

  def __init__(self, resolution: int = 32, latent_dim: int = LATENT_DIM, width: int = WIDTH):
    super().__init__()
    channels = [width * m for m in G_MULTIPLIERS[resolution]]
    self.channels = channels[0]
    self.project = nn.Linear(latent_dim, START_SIZE * START_SIZE * channels[0])
    self.blocks = nn.Sequential(*[UpBlock(c, f) for c, f in zip(channels, channels[1:])])
    self.bn_out = nn.BatchNorm2d(channels[-1])
    self.to_rgb = conv(channels[-1], 3, 3)

  def forward(self, z):
    x = self.project(z).view(-1, self.channels, START_SIZE, START_SIZE)
    x = self.to_rgb(F.relu(self.bn_out(self.blocks(x)), inplace=True))
    return torch.tanh(x)


class Discriminator(nn.Module):
  """images (N, 3, R, R) -> one logit each (N,); every layer spectrally normalised."""

  def __init__(self, resolution: int = 32, width: int = WIDTH):
    super().__init__()
    widths = [width * m for m in D_MULTIPLIERS[resolution]]
    last = len(widths) - 1
    self.blocks = nn.Sequential(*[
        DownBlock(c, f, first=i == 0, downsample=i < last)
        for i, (c, f) in enumerate(zip([3] + widths, widths))])
    self.logit = nn.Linear(widths[-1], 1)

  def forward(self, x):
    features = F.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling (SNGAN)
    return self.logit(features)[:, 0]


def init_resnet(module: nn.Module) -> None:
  """Weights Glorot uniform, biases 0, batch-norm scales N(1, 0.02) (as gan_jax does)."""
  for layer in module.modules():
    if isinstance(layer, (nn.Conv2d, nn.Linear)):
      nn.init.xavier_uniform_(layer.weight)
      if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    elif isinstance(layer, nn.BatchNorm2d):
      nn.init.normal_(layer.weight, 1.0, 0.02)
      nn.init.zeros_(layer.bias)


def spectrally_normalise(module: nn.Module) -> None:
  """Every conv and dense weight of `module` divided by its top singular value (one power
  iteration per training forward)."""
  for layer in list(module.modules()):
    if isinstance(layer, (nn.Conv2d, nn.Linear)):
      spectral_norm(layer)


def build(resolution: int) -> tuple[Generator, Discriminator]:
  """The initialised (G, D) of configs/resnet{resolution}.py."""
  if resolution not in G_MULTIPLIERS:
    raise ValueError(f"the residual networks are built for {sorted(G_MULTIPLIERS)} px, "
                     f"not {resolution}")
  G, D = Generator(resolution), Discriminator(resolution)
  init_resnet(G)
  init_resnet(D)  # before spectral norm, which starts its power iteration from these weights
  spectrally_normalise(D)
  return G, D


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
  return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
  return -fake_logits.mean()
