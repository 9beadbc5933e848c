"""The report as one HTML page: inline style, pictures as data URIs, nothing fetched.

The page's Content-Security-Policy lets it load data: images and its own inline
style and script only, so a browser fetches nothing even if a reference slipped
in. Its small script marks the <html> element once the page has loaded:
data-images (pictures on the page), data-images-loaded (those decoded),
data-requests (any resource the page asked for other than data: URIs) and
data-blocked (anything the policy refused); tests/report/test_report.py reads them
back from a headless Chromium.
"""

from __future__ import annotations

import datetime
import html
import json
from typing import Any, Iterable

from gan_jax import run_record
from gan_jax.report import figures
from gan_jax.report import run_files
from gan_jax.report.run_files import RunFiles

POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
          "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1150px; margin: 1.5em auto;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; }
nav a { margin-right: 1em; } .side { display: flex; flex-wrap: wrap; gap: 0 3em; } .muted { color: #666; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grids { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 1em; }
.curves { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1em; }
figure { margin: 0; } figcaption { text-align: center; color: #555; font-size: 0.9em; }
.grids img { width: 100%; image-rendering: pixelated; } .curves img { width: 100%; }
pre, code { font: 13px/1.35 ui-monospace, monospace; } pre { white-space: pre-wrap; }
.warning { background: #fff3e0; border-left: 4px solid #e65100; padding: 0.3em 0.8em; }
"""
SELF_CHECK = """
(() => {
  const root = document.documentElement, blocked = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    blocked.push(e.blockedURI); root.dataset.blocked = blocked.join(" ");
  });
  window.addEventListener("load", () => {
    const images = Array.from(document.images);
    root.dataset.images = images.length;
    root.dataset.imagesLoaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
    root.dataset.requests = performance.getEntriesByType("resource")
        .map((e) => e.name).filter((name) => !name.startsWith("data:")).join(" ");
  });
})();
"""
# Evaluation scalars in metrics.jsonl (eval/evaluator.py): key, column, decimals.
EVAL_COLUMNS = (("eval/fid", "FID", 4), ("eval/kid", "KID", 5), ("eval/kid_std", "KID sd", 5),
                ("eval/fid_heldout", "held-out FID", 4), ("eval/kid_heldout", "held-out KID", 5),
                ("eval/fid_floor_heldout", "floor FID", 4),
                ("eval/kid_floor_heldout", "floor KID", 5),
                ("eval/precision", "precision", 3), ("eval/recall", "recall", 3))
SECTIONS = (("config", "Config"), ("samples", "Samples"), ("curves", "Curves"),
            ("eval", "FID / KID"), ("collapse", "Collapse warnings"), ("record", "Run record"))


def esc(value: Any) -> str:
  return html.escape(str(value), quote=True)


def table(header: Iterable[str], rows: Iterable[Iterable[Any]], numeric: int = 0) -> str:
  """A table (no header row when `header` is empty); the columns from index `numeric` on are
  right-aligned numbers (0: none)."""
  head = "".join(f"<th>{esc(cell)}</th>" for cell in header)
  head = f"<tr>{head}</tr>" if head else ""
  body = "".join(
      "<tr>" + "".join(f"<td class=num>{esc(cell)}</td>" if numeric and i >= numeric
                       else f"<td>{esc(cell)}</td>" for i, cell in enumerate(row)) + "</tr>"
      for row in rows)
  return f"<table>{head}{body}</table>"


def image(uri: str, alt: str, caption: str = "") -> str:
  caption = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
  return f'<figure><img src="{uri}" alt="{esc(alt)}">{caption}</figure>'


def section(anchor: str, title: str, body: str) -> str:
  return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def changed_table(config: dict) -> str:
  changed = run_files.changed_options(config)
  return (f"<div><h3>Options that differ from the defaults ({len(changed)})</h3>"
          + table(("option", "this run", "default"),
                  [(name, json.dumps(value), json.dumps(default))
                   for name, value, default in changed]) + "</div>")


def config_section(run: RunFiles, config: dict | None) -> str:
  if config is None:
    return "<p>No config recorded: the run has no run.json and no readable checkpoint.</p>"
  known = run_files.config_file(run) or ("not on the command line" if run.starts
                                         else "unknown (no run.json)")
  facts = f"<div><h3>Config file <code>{esc(known)}</code></h3>" + table(
      (), run_files.key_facts(run, config)) + "</div>"
  return (f"<div class=side>{facts}{changed_table(config)}</div>"
          "<details><summary>every option</summary><pre>"
          f"{esc(json.dumps(config, indent=1, sort_keys=True))}</pre></details>")


def samples_section(run: RunFiles, max_grids: int) -> str:
  if not run.grids:
    return "<p>No sample grids (samples/step_*.png).</p>"
  shown = run_files.select_grids(run.grids, max_grids)
  note = (f"<p class=muted>{len(shown)} of {len(run.grids)} grids, evenly spread.</p>"
          if len(shown) < len(run.grids) else "")
  cells = "".join(image(figures.data_uri(path), f"samples at step {step}", f"step {step}")
                  for step, path in shown)
  if run.gif is not None:  # plots/progress.gif: every grid in turn, beside the stills
    cells += image(figures.data_uri(run.gif), "progress GIF", "progress: every grid in turn")
  return f"<p>The fixed-noise samples over training.</p>{note}<div class=grids>{cells}</div>"


def curves_section(uris: dict[str, str]) -> str:
  if not uris:
    return "<p>No training metrics (metrics.jsonl).</p>"
  return "<div class=curves>" + "".join(
      image(uri, f"{name} curve") for name, uri in uris.items())  # titled in the picture + "</div>"


def eval_table(rows: list[dict]) -> str:
  """One row per evaluation, one column per measure that the run logged."""
  columns = [(key, label, digits) for key, label, digits in EVAL_COLUMNS
             if any(key in r for r in rows)]
  values = [[r["step"]] + [f"{r[key]:.{digits}f}" if key in r else ""
                           for key, _, digits in columns] for r in rows]
  return table(["step"] + [label for _, label, _ in columns], values, numeric=1)


def eval_section(records: list[dict], uris: dict[str, str], config: dict | None) -> str:
  rows = [r for r in records if "eval/fid" in r]
  if not rows:
    return ("<p>Not measured in this run (--config.eval.every=N measures FID/KID during "
            "training; docs/evaluation.md).</p>")
  best = min(rows, key=lambda r: r["eval/fid"])
  features = config["eval"]["features"] if config is not None else None
  caveat = (" Measured on pixel features (eval.features=pixels): not comparable to published "
            "FIDs." if features == "pixels" else "")
  return (f"<p>Lowest FID {best['eval/fid']:.4f} at step {best['step']}.{caveat}</p>"
          + eval_table(rows) + curves_section(uris))


def collapse_section(run: RunFiles, config: dict | None) -> str:
  episodes = run_files.collapse_episodes(run.records)
  non_finite = run_files.non_finite_steps(run.records)
  parts = []
  if config is not None:
    monitor = config["monitor"]
    parts.append("<p class=muted>Detectors (monitor.*): D overpowering below "
                 f"{esc(monitor['d_fake_threshold'])} for {esc(monitor['patience'])} "
                 f"logs; mode collapse below {esc(monitor['diversity_fraction'])} of real "
                 "faces' diversity.</p>")
  if not (episodes or non_finite or run.log_warnings):
    return "".join(parts) + "<p>No collapse warning was recorded.</p>"
  if episodes:
    parts.append(table(("detector", "from step", "to step"), [
        (what, start, "the end" if end is None else end) for what, start, end in episodes]))
  if non_finite:
    parts.append(table(("log step", "share of steps with non-finite losses"),
                       [(step, f"{share:.3f}") for step, share in non_finite], numeric=1))
  if run.log_warnings:
    parts.append("<h3>Warnings in log.txt</h3><pre class=warning>"
                 + esc("\n".join(run.log_warnings)) + "</pre>")
  return "".join(parts)


def record_section(run: RunFiles) -> str:
  if not run.starts:
    return "<p>No run.json (a run from before run records).</p>"
  parts = []
  for number, start in enumerate(run.starts, 1):
    git = start.get("git") or {}
    lines = [*run_record.describe(start), f"commit: {git.get('commit', 'not a git checkout')}",
             f"cwd: {start.get('cwd')}", f"XLA_FLAGS: {start.get('xla_flags') or '(none)'}"]
    parts.append(f"<h3>Start {number} of {len(run.starts)}</h3><pre>"
                 + esc("\n".join(lines)) + "</pre>")
  return "".join(parts)


def render(run: RunFiles, config: dict | None, max_grids: int) -> str:
  """The whole page."""
  fraction = (config or {}).get("monitor", {}).get("diversity_fraction")
  training_uris, eval_uris = figures.curve_uris(run.records, fraction)
  bodies = {"config": config_section(run, config),
            "samples": samples_section(run, max_grids),
            "curves": curves_section(training_uris),
            "eval": eval_section(run.records, eval_uris, config),
            "collapse": collapse_section(run, config),
            "record": record_section(run)}
  nav = "".join(f'<a href="#{anchor}">{esc(title)}</a>' for anchor, title in SECTIONS)
  written = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
  main = "".join(section(anchor, title, bodies[anchor]) for anchor, title in SECTIONS)
  name = run.workdir.resolve().name  # also for WORKDIR '.'
  return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(name)}: gan_jax run report</title>
<style>{STYLE}</style>
<script>{SELF_CHECK}</script>
</head>
<body>
<h1>Run report: {esc(name)}</h1>
<p class=muted>{esc(run.workdir.resolve())}, last step {esc(run_files.last_step(run))};
written {esc(written)} by python -m gan_jax.report.</p>
<nav>{nav}</nav>
{main}
</body>
</html>
"""
