"""Train every config on real faces and evaluate each run: the rows of docs/results.md.

  python benchmarks/results.py --faces ../shared/data/celeba6k --out runs/results \\
      [--images 512000] [--num_samples 5000] [--jobs 3] [--only celeba64,faces64_best]

A row is a few commands, run in order and printed as they start:
- gan_jax rows: `gan_jax.main` for images/batch steps, `gan_jax.evaluate run` on the
  final checkpoint (FID, KID and 1-NN accuracy of --num_samples generated faces against
  all training faces, Inception pool3 features; the EMA generator where the config keeps
  one), then `gan_jax.generate` for a grid of 16 faces;
- the PyTorch baseline (torch_celeba64): `gan_jax.prepare` (the same 64 px celeba-crop
  faces training reads), `benchmarks/torch_train.py`, `gan_jax.evaluate fid --one_nn`.
Every run at one resolution sees the same number of images (--images). --jobs rows run
at once, sharing the GPU (small DCGANs leave most of it idle, and compiling, preparing
and evaluating overlap), so a row's wall time is with others running beside it.

Writes OUT/NAME/ for each row (the workdir, log.txt, grid) and OUT/results.json (each
row's commands, wall times, metrics and collapse warnings), rewritten as rows finish.
--pack FILE also rewrites a .tar.gz of the small result files after each row.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tarfile
import threading
import time

from gan_jax.data import prepared_files

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  config: str                 # configs/NAME.py, or "torch" for the PyTorch reference
  resolution: int
  batch: int
  overrides: tuple[str, ...] = ()
  about: str = ""


# In the order they start: what the acceptance needs first.
ROWS = (
    Row("celeba64", "configs/celeba64.py", 64, 128, about="DCGAN paper settings"),
    Row("faces64_best", "configs/faces64_best.py", 64, 128,
        about="DiffAugment + hflip + EMA + bf16"),
    Row("torch_celeba64", "torch", 64, 128, about="PyTorch reference DCGAN, TF32"),
    Row("faces64_best_hinge_sn", "configs/faces64_best.py", 64, 128,
        overrides=("loss.name=hinge", "model.d_spectral_norm=True", "model.d_batch_norm=False",
                   "optim.g_lr=1e-4", "optim.d_lr=4e-4", "optim.b1=0.0", "optim.b2=0.9"),
        about="faces64_best with hinge loss, spectral norm in D (no BN), TTUR"),
    Row("ffhq64", "configs/ffhq64.py", 64, 128, about="latent 64, label smoothing 0.9"),
    Row("celeba32", "configs/celeba32.py", 32, 128, about="4-conv D"),
    Row("lfw36", "configs/lfw36.py", 36, 64, about="9 -> 18 -> 36"),
    Row("faces_folder", "configs/faces_folder.py", 32, 32,
        about="width 32, BN in G only, balance margin 1"),
    Row("resnet64", "configs/resnet64.py", 64, 64,
        about="residual G/D, spectral norm, hinge, DiffAugment + hflip + EMA + bf16"),
    Row("faces32_best", "configs/faces32_best.py", 32, 32,
        about="celeba32 + DiffAugment + hflip + EMA 0.9995 + LeCam 0.1, batch 32"),
    Row("faces64_best_r1", "configs/faces64_best.py", 64, 128,
        overrides=("model.d_batch_norm=False", "loss.r1_gamma=0.05", "loss.r1_every=16"),
        about="faces64_best with lazy R1 (gamma 0.05) instead of batch norm in D"),
)


def torch_commands(row: Row, args, workdir: str) -> list[list[str]]:
  """The PyTorch baseline's commands: prepare (with --holdout, the last faces go aside),
  train, and FID against the training faces (and against the held-out ones, with the
  real-vs-real floor: the first num_samples training faces vs the held-out ones)."""
  python = sys.executable
  name = f"prepared{row.resolution}" + (f"_holdout{args.holdout}" if args.holdout else "")
  prepared = str(args.out / name)
  # Preparing is deterministic: a later run reuses the array an earlier one wrote.
  prepare = [] if (args.out / name / "metadata.json").exists() else [
      [python, "-m", "gan_jax.prepare", "--source", f"folder:{args.faces}",
       "--resolution", str(row.resolution), "--crop", "celeba", "--out", prepared,
       *(["--holdout", str(args.holdout)] if args.holdout else [])]]

  def fid(real: str, fake: str, json_path: str, *options: str) -> list[str]:
    return [python, "-m", "gan_jax.evaluate", "fid", real, fake,
            "--batch_size", str(args.eval_batch), *options, "--json", json_path]

  commands_ = prepare + [
      [python, "benchmarks/torch_train.py", "--data", f"{prepared}/images.npy",
       "--images", str(args.images), "--batch", str(row.batch), "--mode", "tf32",
       "--out", workdir, "--num_samples", str(args.num_samples)],
      fid(f"{prepared}/images.npy", f"{workdir}/samples.npy", f"{workdir}/metrics.json",
          "--one_nn")]
  if args.holdout:
    heldout = f"{prepared}/{prepared_files.HELDOUT_FILE}"
    commands_ += [
        fid(heldout, f"{workdir}/samples.npy", f"{workdir}/metrics_heldout.json"),
        fid(heldout, f"{prepared}/images.npy", f"{workdir}/metrics_floor.json",
            "--limit", str(args.num_samples))]
  return commands_


def commands(row: Row, args) -> list[list[str]]:
  python = sys.executable
  workdir = str(args.out / row.name)
  steps = args.images // row.batch
  if row.config == "torch":
    return torch_commands(row, args, workdir)
  return [
      [python, "-m", "gan_jax.main", "--config", row.config, "--workdir", workdir,
       f"--config.data.path={args.faces}", f"--config.train.num_steps={steps}",
       *(f"--config.{o}" for o in row.overrides),
       *([f"--config.data.holdout={args.holdout}"] if args.holdout else [])],
      [python, "-m", "gan_jax.evaluate", "run", "--workdir", workdir,
       "--num_samples", str(args.num_samples), "--batch", str(args.eval_batch), "--one_nn"],
      [python, "-m", "gan_jax.generate", "--workdir", workdir, "--num", "16", "--columns", "8",
       "--seed", "0", "--out", f"{workdir}/grid", "--grid_only"],
  ]


def shown(command: list[str]) -> str:
  """The command as a user types it (python, not this interpreter's path)."""
  return shlex.join(["python" if command[0] == sys.executable else command[0], *command[1:]])


def collapse_warnings(workdir: pathlib.Path) -> dict[str, list[int]]:
  """Steps at which each collapse detector turned on, from the run's metrics.jsonl."""
  fired: dict[str, list[int]] = {"d_overpowering": [], "mode_collapse": []}
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return fired
  active = dict.fromkeys(fired, 0.0)
  for line in path.read_text().splitlines():
    record = json.loads(line)
    for name in fired:
      value = record.get(f"collapse/{name}")
      if value is None:
        continue
      if value and not active[name]:
        fired[name].append(record["step"])
      active[name] = value
  return fired


HELDOUT_METRICS = ("fid_heldout", "kid_heldout", "kid_std_heldout", "fid_floor_heldout",
                   "kid_floor_heldout", "num_heldout", "num_floor")


def torch_heldout_metrics(workdir: pathlib.Path) -> dict:
  """The PyTorch row's held-out metrics, named as `gan_jax.evaluate run` names them
  (nothing when it was not evaluated against held-out faces)."""
  if not (workdir / "metrics_heldout.json").exists():
    return {}
  heldout = json.loads((workdir / "metrics_heldout.json").read_text())
  floor = json.loads((workdir / "metrics_floor.json").read_text())
  return {"fid_heldout": heldout["fid"], "kid_heldout": heldout["kid"],
          "kid_std_heldout": heldout["kid_std"], "fid_floor_heldout": floor["fid"],
          "kid_floor_heldout": floor["kid"], "num_heldout": heldout["num_real"],
          "num_floor": floor["num_fake"]}


def metrics_of(row: Row, workdir: pathlib.Path) -> dict:
  if row.config == "torch":
    metrics = json.loads((workdir / "metrics.json").read_text())
    train = json.loads((workdir / "train.json").read_text())
    return {"fid": metrics["fid"], "kid_mean": metrics["kid"], "kid_std": metrics["kid_std"],
            "one_nn_accuracy": metrics["one_nn_accuracy"], "images_seen": train["images_seen"],
            "train_img_per_s": train["img_per_s"], **torch_heldout_metrics(workdir)}
  # The final checkpoint's Inception metrics: the highest step (as a number, not as text).
  steps = {int(p.stem.removeprefix("metrics_step_")): p
           for p in (workdir / "eval").glob("metrics_step_*.json")
           if p.stem.removeprefix("metrics_step_").isdigit()}
  path = steps[max(steps)]
  metrics = json.loads(path.read_text())
  row = {name: metrics[name] for name in ("step", "fid", "kid_mean", "kid_std",
                                          "one_nn_accuracy", "num_samples", "num_real", "ema")}
  # With --holdout: the same samples against the held-out faces, and the real-vs-real floor.
  row.update({name: metrics[name] for name in HELDOUT_METRICS if name in metrics})
  return row


def run_row(row: Row, args, report) -> dict:
  workdir = args.out / row.name
  workdir.mkdir(parents=True, exist_ok=True)
  result = {"name": row.name, "config": row.config, "about": row.about,
            "resolution": row.resolution, "batch": row.batch, "images": args.images,
            "commands": [], "seconds": [], "status": "ok"}
  started = time.time()
  with open(workdir / "log.txt", "w") as log:
    for command in commands(row, args):
      result["commands"].append(shown(command))
      print(f"[{row.name}] {shown(command)}", flush=True)
      log.write(f"$ {shown(command)}\n")
      log.flush()
      start = time.time()
      code = subprocess.call(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
      result["seconds"].append(round(time.time() - start, 1))
      if code:
        result["status"] = f"failed (exit {code}): {shown(command)}"
        print(f"[{row.name}] FAILED with exit {code}; see {workdir / 'log.txt'}", flush=True)
        break
  result["wall_s"] = round(time.time() - started, 1)
  if result["status"] == "ok":
    result.update(metrics_of(row, workdir))
    result["collapse_warnings"] = collapse_warnings(workdir)
    print(f"[{row.name}] FID {result['fid']:.2f}, KID {result['kid_mean']:.4f}, "
          f"1-NN {result['one_nn_accuracy']:.3f} ({result['wall_s']:.0f} s)", flush=True)
    if "fid_heldout" in result:
      print(f"[{row.name}] held-out FID {result['fid_heldout']:.2f} "
            f"(real-vs-real floor {result['fid_floor_heldout']:.2f})", flush=True)
  report(result)
  return result


SMALL_FILES = ("log.txt", "metrics.jsonl", "metrics.json", "metrics_*.json", "train.json",
               "eval/*.json", "grid/grid.png", "grid.png", "plots/*.png", "config.json")


def pack(out: pathlib.Path, archive: pathlib.Path) -> None:
  """The small result files of every row (no checkpoints, no samples) into a .tar.gz."""
  partial = archive.with_name(archive.name + ".partial")
  with tarfile.open(partial, "w:gz") as tar:
    tar.add(out / "results.json", arcname="results.json")
    for row_dir in sorted(p for p in out.iterdir() if p.is_dir()):
      for pattern in SMALL_FILES:
        for path in sorted(row_dir.glob(pattern)):
          tar.add(path, arcname=str(path.relative_to(out)))
  os.replace(partial, archive)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--faces", required=True, help="folder of face photos (e.g. celeba6k)")
  parser.add_argument("--out", required=True, type=pathlib.Path, help="output folder")
  parser.add_argument("--images", type=int, default=512_000, help="images seen by every run")
  parser.add_argument("--num_samples", type=int, default=5000,
                      help="generated faces per evaluation")
  parser.add_argument("--eval_batch", type=int, default=250,
                      help="images per generator / Inception call in the evaluations")
  parser.add_argument("--jobs", type=int, default=3, help="rows run at once")
  parser.add_argument("--holdout", type=int, default=0,
                      help="set aside the last N faces (data.holdout): evaluate then also "
                           "reports FID/KID against them and the real-vs-real floor")
  parser.add_argument("--only", default="", help="comma-separated row names (default: all)")
  parser.add_argument("--deadline_s", type=float, default=0,
                      help="start no row after this many seconds (0: no limit)")
  parser.add_argument("--pack", type=pathlib.Path, default=None,
                      help="rewrite this .tar.gz of the small result files after each row")
  args = parser.parse_args(argv)
  names = [name for name in args.only.split(",") if name]
  if unknown := set(names) - {row.name for row in ROWS}:
    parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(r.name for r in ROWS)}")
  rows = [row for row in ROWS if not names or row.name in names]
  args.out = args.out.resolve()
  args.out.mkdir(parents=True, exist_ok=True)
  args.faces = str(pathlib.Path(args.faces).resolve())
  if not pathlib.Path(args.faces).is_dir():
    parser.error(f"--faces {args.faces} is not a folder of face photos")

  summary = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
             "faces": args.faces, "images": args.images, "num_samples": args.num_samples,
             "jobs": args.jobs, "command": shlex.join(["python", *sys.argv]), "rows": []}
  lock = threading.Lock()

  def report(result):
    with lock:
      summary["rows"].append(result)
      (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
      if args.pack:
        pack(args.out, args.pack)

  start = time.time()

  def maybe_run(row):
    if args.deadline_s and time.time() - start > args.deadline_s:
      print(f"[{row.name}] skipped: past --deadline_s {args.deadline_s:.0f}", flush=True)
      return None
    return run_row(row, args, report)

  with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
    results = [r for r in pool.map(maybe_run, rows) if r is not None]
  failed = [r["name"] for r in results if r["status"] != "ok"]
  print(f"{len(results) - len(failed)} of {len(rows)} rows done in {time.time() - start:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
