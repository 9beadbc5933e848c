"""Train the PyTorch reference DCGAN on real faces: the baseline row of docs/results.md.

The networks and the iteration are torch_reference.py's (the celeba32/celeba64
shapes; one D update on a real and a fake batch, then one G update on the same
fakes; Adam 2e-4, b1 0.5; BCE with logits). Real batches come from a prepared
uint8 (N, H, W, 3) .npy, held on the device and reshuffled every epoch, so the
run sees exactly `--images` images, like gan_jax at the same batch size.

  python -m gan_jax.prepare --source folder:../shared/data/celeba6k --resolution 64 \
      --crop celeba --out faces64
  python benchmarks/torch_train.py --data faces64/images.npy --images 512000 --mode tf32 \
      --out runs/torch_celeba64 --num_samples 5000
  python -m gan_jax.evaluate fid faces64/images.npy runs/torch_celeba64/samples.npy --one_nn

Writes OUT/samples.npy (uint8, from G in inference mode: running batch
statistics, as gan_jax samples), OUT/grid.png (the first 16) and OUT/train.json
(images seen, wall time, losses, versions, the command).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(1, str(pathlib.Path(__file__).resolve().parents[1]))  # gan_jax, uninstalled
import torch_reference  # noqa: E402  (the networks and the iteration)

from gan_jax import images as image_lib  # noqa: E402  (grids laid out as gan_jax.generate's)


def load_faces(path: str, device: torch.device) -> torch.Tensor:
  faces = np.load(path, mmap_mode="r")
  if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[-1] != 3:
    raise SystemExit(f"error: {path} holds {faces.dtype} {faces.shape}; expected uint8 "
                     "(N, H, W, 3) faces, e.g. from `python -m gan_jax.prepare`")
  if faces.shape[1] not in (32, 64) or faces.shape[1] != faces.shape[2]:
    raise SystemExit(f"error: the reference DCGAN builds 32 or 64 px square images, "
                     f"{path} has {faces.shape[1]}x{faces.shape[2]}")
  return torch.from_numpy(np.array(faces)).to(device).permute(0, 3, 1, 2).contiguous()


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data", required=True, help="prepared uint8 (N, H, W, 3) .npy of faces")
  parser.add_argument("--images", type=int, required=True, help="images seen in training")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--mode", default="tf32", choices=torch_reference.MODES)
  parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_samples", type=int, default=5000, help="images written to samples.npy")
  parser.add_argument("--log_every", type=int, default=500, help="steps between loss readings")
  parser.add_argument("--out", required=True, help="output folder")
  return parser


def train_loop(step: torch_reference.Iteration, faces: torch.Tensor, batch: int, num_steps: int,
               log_every: int, shuffle: torch.Generator,
               device: torch.device) -> tuple[list, float]:
  """Run `num_steps` iterations over the faces, reshuffled every epoch: (losses, wall seconds)."""
  memory_format = torch.channels_last if step.channels_last else torch.contiguous_format
  per_epoch = len(faces) // batch  # the last partial batch is dropped, as gan_jax does
  losses = []
  start = time.perf_counter()
  for i in range(num_steps):
    if i % per_epoch == 0:
      order = torch.randperm(len(faces), generator=shuffle).to(device)
    index = order[(i % per_epoch) * batch:(i % per_epoch + 1) * batch]
    real = faces[index].float().div_(127.5).sub_(1.0)
    step.real = real.contiguous(memory_format=memory_format)
    d_loss, g_loss = step()
    if (i + 1) % log_every == 0 or i + 1 == num_steps:
      losses.append({"step": i + 1, "d_loss": d_loss.item(), "g_loss": g_loss.item()})
      elapsed = time.perf_counter() - start
      print(f"step {i + 1}: d_loss={losses[-1]['d_loss']:.4f} g_loss={losses[-1]['g_loss']:.4f} "
            f"{(i + 1) * batch / elapsed:.0f} img/s", flush=True)
  torch_reference.synchronize(device)
  return losses, time.perf_counter() - start


def sample_faces(step: torch_reference.Iteration, num_samples: int, seed: int,
                 shuffle: torch.Generator, device: torch.device) -> np.ndarray:
  """uint8 (N, H, W, 3) samples of G in inference mode, from noise seeded with seed + 1."""
  step.G.eval()  # running batch statistics, as gan_jax's sampling uses
  z = torch.randn(num_samples, step.latent_dim, generator=shuffle.manual_seed(seed + 1))
  with torch.no_grad():
    return np.concatenate([
        image_lib.to_uint8(step.G(z[s:s + 500].to(device)).float().permute(0, 2, 3, 1).cpu().numpy())
        for s in range(0, num_samples, 500)])


def train_record(args: argparse.Namespace, device: torch.device, num_faces: int, resolution: int,
                 num_steps: int, wall: float, losses: list) -> dict:
  """train.json's contents."""
  return {"system": "pytorch", "torch_version": torch.__version__,
          "device": torch_reference.device_name(device), "mode": args.mode, "data": args.data,
          "num_faces": num_faces, "resolution": resolution, "batch": args.batch,
          "steps": num_steps, "images_seen": num_steps * args.batch, "wall_s": wall,
          "img_per_s": num_steps * args.batch / wall, "losses": losses,
          "num_samples": args.num_samples, "seed": args.seed,
          "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
          "command": " ".join([pathlib.Path(sys.argv[0]).name] + sys.argv[1:])}


def main(argv=None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  device = torch.device(args.device)
  if device.type == "cuda" and not torch.cuda.is_available():
    parser.error("--device cuda but torch sees no GPU; use --device cpu")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)

  torch.manual_seed(args.seed)
  faces = load_faces(args.data, device)
  if len(faces) < args.batch:
    parser.error(f"{args.data} has {len(faces)} images, fewer than --batch {args.batch}")
  resolution = faces.shape[-1]
  torch_reference.set_mode(args.mode, device)
  step = torch_reference.Iteration(resolution, args.batch, args.mode, device)
  shuffle = torch.Generator(device="cpu").manual_seed(args.seed)
  num_steps = args.images // args.batch
  print(f"PyTorch {torch.__version__} on {torch_reference.device_name(device)}: {num_steps} steps "
        f"of {args.batch} ({args.mode}) on {len(faces)} faces at {resolution} px", flush=True)
  losses, wall = train_loop(step, faces, args.batch, num_steps, args.log_every, shuffle, device)

  samples = sample_faces(step, args.num_samples, args.seed, shuffle, device)
  np.save(out / "samples.npy", samples)
  image_lib.save_png(out / "grid.png", image_lib.make_grid(samples[:16], columns=8))
  result = train_record(args, device, len(faces), resolution, num_steps, wall, losses)
  (out / "train.json").write_text(json.dumps(result, indent=2) + "\n")
  print(f"{num_steps * args.batch} images in {wall:.1f} s; wrote {out}/samples.npy, grid.png, "
        "train.json")
  return 0


if __name__ == "__main__":
  sys.exit(main())
