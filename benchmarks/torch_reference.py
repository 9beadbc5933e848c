"""The DCGAN or residual GAN training iteration in PyTorch, timed: the baseline for gan_jax.bench.

`--model dcgan`: the networks of configs/celeba32.py and configs/celeba64.py
(latent 100, 64 filters, batch norm on every layer of G but the last and on every
conv of D but the first), Adam(2e-4, b1=0.5), BCE with logits (non-saturating G
loss). `--model resnet`: those of configs/resnet32.py and resnet64.py
(torch_resnet.py: residual blocks, spectral norm on every layer of D), hinge loss,
Adam(b1=0, b2=0.9) at 1e-4 (G) / 4e-4 (D), without resnet32's DiffAugment and EMA
of G (bench gan_jax with --config.augment.policy= --config.train.ema_decay=0).
Both run gan_jax.training.step's iteration: one D update on a real and a fake
batch, then one G update through the updated D on the same fakes, D's weights
taking no gradients. Real images are already on the device and reused, as in
gan_jax.bench's model-only rows.

  python benchmarks/torch_reference.py --resolution 64 --batch 128,512 \
      --mode fp32,tf32,bf16 --device cuda --json torch.json
  python benchmarks/torch_reference.py --resolution 32 --batch 128 --mode fp32 --device cpu
  python benchmarks/torch_reference.py --model resnet --resolution 32 --batch 64,128 \
      --mode fp32,bf16 --device cpu --json torch_resnet32.json

Modes: fp32 (no TF32), tf32 (TF32 matmuls and convolutions; the same as fp32 on
a CPU), bf16 (autocast to bfloat16 with channels_last memory format). `--compile`
adds the same modes run through torch.compile. On a CPU torch uses one thread per
core this process may run on (--threads overrides it).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

import torch_resnet

MODES = ("fp32", "tf32", "bf16")


def start_size(resolution: int) -> int:
  return 9 if resolution % 9 == 0 else 4


class Generator(nn.Module):
  """z (N, latent) -> images (N, 3, R, R) in [-1, 1]; one dense projection, then 2x upsamplings."""

  def __init__(self, resolution: int, latent_dim: int = 100, width: int = 64):
    super().__init__()
    self.size = start_size(resolution)
    steps = (resolution // self.size).bit_length() - 1
    self.channels = width * 2 ** (steps - 1)
    self.project = nn.Linear(latent_dim, self.size * self.size * self.channels, bias=False)
    layers, channels = [], self.channels
    for i in range(steps):
      last = i == steps - 1
      out = 3 if last else channels // 2
      layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                 nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1, bias=last)]
      channels = out
    self.body = nn.Sequential(*layers)

  def forward(self, z):
    x = self.project(z).view(-1, self.channels, self.size, self.size)
    return torch.tanh(self.body(x))


class Discriminator(nn.Module):
  """images (N, 3, R, R) -> one logit each; stride-2 convs down to `final_size`, then dense."""

  def __init__(self, resolution: int, width: int = 64, final_size: int = 0):
    super().__init__()
    final = final_size or start_size(resolution)
    layers, size, channels, in_channels, i = [], resolution, width, 3, 0
    while size > final:
      layers.append(nn.Conv2d(in_channels, channels, 4, stride=2, padding=1, bias=i == 0))
      if i > 0:
        layers.append(nn.BatchNorm2d(channels))
      layers.append(nn.LeakyReLU(0.2, inplace=True))
      in_channels, size, channels, i = channels, size // 2, channels * 2, i + 1
    self.body = nn.Sequential(*layers)
    self.logit = nn.Linear(in_channels * final * final, 1)

  def forward(self, x):
    return self.logit(torch.flatten(self.body(x), 1))[:, 0]


def init_dcgan(module: nn.Module) -> None:
  """Every weight from N(0, 0.02); batch-norm scales from N(1, 0.02) (as gan_jax does)."""
  for layer in module.modules():
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
      nn.init.normal_(layer.weight, 0.0, 0.02)
      if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    elif isinstance(layer, nn.BatchNorm2d):
      nn.init.normal_(layer.weight, 1.0, 0.02)
      nn.init.zeros_(layer.bias)


def config_shapes(resolution: int) -> dict:
  """The model options of our configs at this resolution (celeba32 stops D at 2x2)."""
  return {"latent_dim": 100, "width": 64, "d_final_size": 2 if resolution == 32 else 0}


def build_dcgan(resolution: int) -> tuple[Generator, Discriminator]:
  """The initialised (G, D) of configs/celeba{resolution}.py."""
  shapes = config_shapes(resolution)
  G = Generator(resolution, shapes["latent_dim"], shapes["width"])
  D = Discriminator(resolution, shapes["width"], shapes["d_final_size"])
  init_dcgan(G)
  init_dcgan(D)
  return G, D


def bce_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
  return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) +
          F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def bce_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
  return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


@dataclasses.dataclass(frozen=True)
class Family:
  """What the model families' iterations differ in."""
  latent_dim: int
  build: Callable  # resolution -> the initialised (G, D)
  d_loss: Callable  # (real logits, fake logits) -> D's loss
  g_loss: Callable  # fake logits -> G's loss
  g_adam: dict
  d_adam: dict


DCGAN_ADAM = dict(lr=2e-4, betas=(0.5, 0.999))
FAMILIES = {
    "dcgan": Family(100, build_dcgan, bce_d_loss, bce_g_loss, DCGAN_ADAM, DCGAN_ADAM),
    "resnet": Family(torch_resnet.LATENT_DIM, torch_resnet.build, torch_resnet.hinge_d_loss,
                     torch_resnet.hinge_g_loss, torch_resnet.G_ADAM, torch_resnet.D_ADAM),
}


class Iteration:
  """One D update then one G update; `__call__` runs it (no host sync)."""

  def __init__(self, resolution: int, batch: int, mode: str, device: torch.device,
               compile_step: bool = False, model: str = "dcgan"):
    self.family = FAMILIES[model]
    self.latent_dim, self.batch, self.device = self.family.latent_dim, batch, device
    self.G, self.D = self.family.build(resolution)
    self.channels_last = mode == "bf16"
    memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
    self.G.to(device, memory_format=memory_format)
    self.D.to(device, memory_format=memory_format)
    # foreach: one fused kernel launch per parameter group, as fast as torch offers by default.
    self.opt_g = torch.optim.Adam(self.G.parameters(), **self.family.g_adam)
    self.opt_d = torch.optim.Adam(self.D.parameters(), **self.family.d_adam)
    self.autocast = mode == "bf16"
    real = torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1
    self.real = real.contiguous(memory_format=memory_format)
    self.g_forward, self.d_forward = self.G, self.D
    if compile_step:
      self.g_forward, self.d_forward = torch.compile(self.G), torch.compile(self.D)

  def __call__(self):
    z = torch.randn(self.batch, self.latent_dim, device=self.device)
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
      fake = self.g_forward(z)
      if self.channels_last:
        fake = fake.contiguous(memory_format=torch.channels_last)
      # D: real and fake batches in separate forwards (batch norm sees each alone; spectral
      # norm's power iteration advances in each, as in gan_jax).
      d_loss = self.family.d_loss(self.d_forward(self.real).float(),
                                  self.d_forward(fake.detach()).float())
    self.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    self.opt_d.step()
    # G: the same fakes through the updated D. D's weights need no gradients here
    # (gan_jax skips them too).
    self.D.requires_grad_(False)
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
      g_loss = self.family.g_loss(self.d_forward(fake).float())
    self.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    self.opt_g.step()
    self.D.requires_grad_(True)
    return d_loss, g_loss


def set_mode(mode: str, device: torch.device) -> None:
  tf32 = mode == "tf32"
  if device.type == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True  # pick the fastest conv algorithms for these shapes


def synchronize(device: torch.device) -> None:
  if device.type == "cuda":
    torch.cuda.synchronize(device)


def time_iterations(step: Iteration, steps: int, warmup: int, repeats: int) -> float:
  """Seconds per iteration: the best of `repeats` windows of `steps` iterations."""
  for _ in range(warmup):
    step()
  synchronize(step.device)
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      step()
    synchronize(step.device)
    best = min(best, (time.perf_counter() - start) / steps)
  return best


def device_name(device: torch.device) -> str:
  if device.type == "cuda":
    return torch.cuda.get_device_name(device)
  return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def cpu_cores() -> int:
  """The cores this process may run on (its affinity mask, else all of the machine's)."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="dcgan", choices=sorted(FAMILIES))
  parser.add_argument("--resolution", type=int, default=64, choices=(32, 64))
  parser.add_argument("--batch", default="128", help="comma-separated global batch sizes")
  parser.add_argument("--mode", default="fp32,tf32,bf16", help=f"comma-separated: {MODES}")
  parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
  parser.add_argument("--steps", type=int, default=50, help="timed iterations per window")
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3, help="timed windows; the best is kept")
  parser.add_argument("--compile", action="store_true", help="also run each mode under torch.compile")
  parser.add_argument("--threads", type=int, default=0,
                      help="CPU threads (0: one per core this process may run on)")
  parser.add_argument("--json", default="", help="write the results here")
  args = parser.parse_args(argv)
  modes = args.mode.split(",")
  if unknown := set(modes) - set(MODES):
    parser.error(f"unknown mode(s) {sorted(unknown)}; use {', '.join(MODES)}")
  device = torch.device(args.device)
  if device.type == "cuda" and not torch.cuda.is_available():
    parser.error("--device cuda but torch sees no GPU; use --device cpu")
  if args.threads or device.type == "cpu":
    # Threads = cores: torch's own default may count physical cores only.
    torch.set_num_threads(args.threads or cpu_cores())
  torch.manual_seed(0)

  rows = []
  print(f"PyTorch {torch.__version__} on {device_name(device)}; {args.model} {args.resolution} px")
  print(f"{'batch':>6} {'mode':>12} {'img/s':>10} {'ms/step':>9} {'peak MiB':>9}")
  for batch in (int(b) for b in args.batch.split(",")):
    for compiled in (False, True) if args.compile else (False,):
      for mode in modes:
        set_mode(mode, device)
        if device.type == "cuda":
          torch.cuda.reset_peak_memory_stats(device)
        step = Iteration(args.resolution, batch, mode, device, compile_step=compiled,
                         model=args.model)
        seconds = time_iterations(step, args.steps, args.warmup, args.repeats)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        name = mode + ("+compile" if compiled else "")
        row = {"batch": batch, "mode": name, "img_per_s": batch / seconds,
               "ms_per_step": 1e3 * seconds, "peak_memory_bytes": peak}
        rows.append(row)
        peak_text = f"{peak / 2**20:9.0f}" if peak is not None else f"{'n/a':>9}"
        print(f"{batch:6d} {name:>12} {row['img_per_s']:10.1f} {row['ms_per_step']:9.2f} {peak_text}",
              flush=True)
        del step
  if args.json:
    result = {"system": "pytorch", "torch_version": torch.__version__, "device": device_name(device),
              "model": args.model, "resolution": args.resolution,
              "threads": torch.get_num_threads(), "steps": args.steps, "warmup": args.warmup,
              "repeats": args.repeats, "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join(sys.argv), "rows": rows}
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
