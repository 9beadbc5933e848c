"""Plot held-out FID against images seen and against training minutes (docs/results.md).

  python benchmarks/plot_heldout_curve.py curve.json --img_per_s celeba32=270.4,faces32_best=258.4 \
      --out docs/img/heldout_fid_32px.png

Reads the JSON of benchmarks/heldout_curve.py (several files may be given; rows are merged
by run and step). Minutes are images seen divided by each config's training throughput
measured alone on the machine (`python -m gan_jax.bench`, given as --img_per_s), since the
runs themselves may have shared the CPU; the real-vs-real floor is drawn as a line.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("curves", nargs="+")
  parser.add_argument("--img_per_s", required=True, help="RUN=images/s,... measured by bench")
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)

  speed = {name: float(value) for name, value in
           (item.split("=") for item in args.img_per_s.split(","))}
  rows, floor, num_samples = {}, None, None
  for path in args.curves:
    curve = json.loads(pathlib.Path(path).read_text())
    floor, num_samples = curve["floor"]["fid"], curve["num_samples"]
    for row in curve["rows"]:
      rows[(row["run"], row["step"])] = row
  figure, (by_images, by_minutes) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  for run in sorted({run for run, _ in rows}):
    points = sorted((row["images_seen"], row["heldout"]["fid"])
                    for (name, _), row in rows.items() if name == run)
    images = [p[0] for p in points]
    fids = [p[1] for p in points]
    by_images.plot([i / 1000 for i in images], fids, "o-", label=run)
    by_minutes.plot([i / speed[run] / 60 for i in images], fids, "o-", label=run)
  for axis in (by_images, by_minutes):
    axis.axhline(floor, color="grey", linestyle="--", label="real vs real floor")
    axis.grid(alpha=0.3)
  by_images.set_xlabel("thousands of images seen")
  by_minutes.set_xlabel("minutes of training alone on the CPU (images / bench img/s)")
  by_images.set_ylabel(f"FID vs held-out faces ({num_samples} samples)")
  by_images.legend()
  figure.tight_layout()
  figure.savefig(args.out, dpi=100)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
