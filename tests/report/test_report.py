"""The run report (python -m gan_jax.report): its contents, its errors, and a real browser.

The report of a real run is made once per module: the session's tiny workdir
(trained 20 steps) resumed to step 40 with sample grids every 10 steps and
pixel-feature FID/KID every 10, so it has three grids, a progress GIF, two
evaluations and two starts in run.json. A headless Chromium then opens it.
"""

import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from gan_jax import checkpoint, start
from gan_jax.report import command, run_files

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# A reference that would make a browser fetch something: src/href/url() to a network
# address (http:, https: or scheme-relative //), a stylesheet link or a CSS @import.
NETWORK_REFERENCE = re.compile(
    r"""(?:\b(?:src|href)\s*=\s*["']?|url\(\s*["']?)\s*(?:https?:|//)|<link\b|@import""", re.I)
IMG = re.compile(r'<img src="([^"]*)" alt="([^"]*)"')


@pytest.fixture(scope="module")
def report_run(tiny_workdir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("report") / "run"
  shutil.copytree(tiny_workdir, workdir)
  config = checkpoint.load_config(workdir)
  config.train.num_steps, config.log_every, config.sample_every = 40, 5, 10
  config.eval.every, config.eval.num_samples = 10, 48
  config.eval.features, config.eval.batch_size = "pixels", 16
  config.eval.keep_best, config.checkpoint_every = False, 1000  # saves nothing the report reads
  start.run(config, str(workdir))  # the second start in run.json
  return workdir


@pytest.fixture(scope="module")
def report_html(report_run):
  return command.write_report(report_run).read_text()


def images_by_alt(html: str) -> dict[str, str]:
  return {alt: uri for uri, alt in IMG.findall(html)}


def decoded(uri: str) -> bytes:
  return base64.b64decode(uri.split(",", 1)[1])


def test_every_picture_is_embedded(report_run, report_html):
  images = images_by_alt(report_html)
  assert len(IMG.findall(report_html)) == len(images) == report_html.count("<img ")
  for alt, uri in images.items():
    assert re.match(r"data:image/(png|gif);base64,", uri), alt
    with Image.open(io.BytesIO(decoded(uri))) as picture:
      assert picture.width > 16 and picture.height > 16, alt
  for step in (20, 30, 40):
    grid = report_run / "samples" / f"step_{step:07d}.png"
    assert decoded(images[f"samples at step {step}"]) == grid.read_bytes()
  assert images["progress GIF"].startswith("data:image/gif;base64,")
  curves = {"losses", "d_scores", "d_accuracy", "diversity", "fid", "kid"}
  assert {f"{name} curve" for name in curves} <= set(images)


def test_nothing_refers_to_the_network(report_html):
  assert NETWORK_REFERENCE.search(report_html) is None
  assert "<script src" not in report_html
  assert "default-src 'none'; img-src data:" in report_html  # the browser may fetch nothing


def test_config_in_short(report_html):
  for fact in ("16 px", "40 of 40 (1,280 images seen)", "dcgan, latent 16, width 8"):
    assert f"<td>{fact}</td>" in report_html
  # configs/tiny.py against configs/default.py, and a resumed run's own change.
  assert "<td>train.batch_size</td><td>32</td><td>128</td>" in report_html
  assert "<td>data.resolution</td><td>16</td><td>64</td>" in report_html
  assert "<td>eval.features</td><td>&quot;pixels&quot;</td><td>&quot;inception&quot;</td>" in (
      report_html)


def test_fid_and_kid_over_steps(report_run, report_html):
  records = [json.loads(line) for line in (report_run / "metrics.jsonl").read_text().splitlines()]
  evaluations = [r for r in records if "eval/fid" in r]
  assert [r["step"] for r in evaluations] == [30, 40]
  for r in evaluations:
    assert (f"<td class=num>{r['eval/fid']:.4f}</td><td class=num>{r['eval/kid']:.5f}</td>"
            in report_html)
  assert "not comparable to published FIDs" in report_html


def test_run_record_of_every_start(report_run, report_html):
  starts = json.loads((report_run / "run.json").read_text())["starts"]
  assert len(starts) == 2 and "Start 2 of 2" in report_html
  git = starts[-1]["git"]
  assert f"commit: {git['commit'] if git else 'not a git checkout'}" in report_html
  assert f"jax {starts[-1]['versions']['jax']}" in report_html
  assert "command: python " in report_html


def test_collapse_warnings_from_metrics_and_log(tmp_path):
  flags = [(5, 0, 0), (10, 1, 0), (15, 1, 1), (20, 0, 1)]  # step, D overpowering, collapse
  records = [{"step": step, "epoch": step / 10, "d_loss": 1.0, "g_loss": 1.0 + step / 100,
              "collapse/d_overpowering": d, "collapse/mode_collapse": m,
              "collapse/non_finite": 0.25 if step == 15 else 0.0} for step, d, m in flags]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  (tmp_path / "log.txt").write_text(
      "2026-12-07 19:08:27,585 INFO monitor.py:184] step 5/20: d_loss=1.0\n"
      "2026-12-07 19:08:28,000 WARNING monitor.py:244] step 10: discriminator overpowering the "
      "generator: mean D(G(z)) < 0.03 for 5 logs\n"
      "2026-12-07 19:08:29,000 WARNING no_effect.py:12] train.ema_rampup has no effect\n")
  run = run_files.read_run(tmp_path)
  assert run_files.collapse_episodes(run.records) == [
      ("discriminator overpowering the generator", 10, 15),
      ("mode collapse (samples far less varied than real faces)", 15, None)]
  assert run.log_warnings == ["2026-12-07 19:08:28 step 10: discriminator overpowering the "
                              "generator: mean D(G(z)) < 0.03 for 5 logs"]
  html = command.write_report(tmp_path).read_text()
  assert "<td>mode collapse (samples far less varied than real faces)</td><td>15</td>" \
         "<td>the end</td>" in html
  assert "<td>15</td><td class=num>0.250</td>" in html
  assert "has no effect" not in html
  assert "No config recorded" in html and "No run.json" in html


def test_select_grids_spreads_evenly_with_first_and_last():
  assert run_files.select_grids(list(range(5)), 12) == list(range(5))
  picked = run_files.select_grids(list(range(30)), 12)
  assert len(picked) == 12 and picked[0] == 0 and picked[-1] == 29 and picked == sorted(picked)


def test_command_writes_out_and_explains_a_bad_workdir(report_run, tmp_path, capsys):
  out = tmp_path / "pages" / "run.html"
  assert command.main([str(report_run), "--out", str(out), "--max_grids", "2"]) == 0
  assert capsys.readouterr().out == f"{out}\n"
  assert len(re.findall(r'alt="samples at step', out.read_text())) == 2
  missing = tmp_path / "no_such_run"
  assert command.main([str(missing)]) == 1
  assert capsys.readouterr().err == (f"error: {missing} is not a directory; pass the --workdir "
                                     "of a training run\n")
  assert command.main([str(tmp_path / "pages")]) == 1
  assert capsys.readouterr().err == (
      f"error: {tmp_path / 'pages'} has no metrics.jsonl, samples/step_*.png or run.json; pass "
      "the --workdir of a training run\n")


# A real browser: Chromium, headless, opens the page.

def chromium() -> str:
  """The Chromium binary; skips without one, except under CI=true where it must be there."""
  for name in CHROMIUM_NAMES:
    if found := shutil.which(name):
      return found
  message = f"no Chromium on PATH (tried {', '.join(CHROMIUM_NAMES)}): apt-get install chromium"
  if os.environ.get("CI") == "true":
    pytest.fail(message + "; CI installs it in .ci/run")
  pytest.skip(message)


def open_in_chromium(page, folder) -> tuple[subprocess.CompletedProcess, list[str]]:
  """(Chromium's run with the page's DOM on stdout, the URLs the page asked the network for).

  Console messages go to stderr (--enable-logging); the net log records every
  network request, and those of the page carry its file:// isolation key (the
  browser's own background requests carry none).
  """
  net_log = folder / "net_log.json"
  result = subprocess.run(
      [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
       "--disable-background-networking", "--disable-component-update", "--disable-sync",
       "--hide-scrollbars", f"--user-data-dir={folder / 'profile'}", "--enable-logging=stderr",
       "--v=0", f"--log-net-log={net_log}", f"--screenshot={folder / 'page.png'}",
       "--window-size=1200,2000", "--dump-dom", page.as_uri()],
      capture_output=True, text=True, timeout=120, cwd=folder)
  log = json.loads(net_log.read_text())
  start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
  requests = [event["params"]["url"] for event in log["events"]
              if event["type"] == start and "file://" in str(event.get("params"))]
  return result, requests


def test_report_opens_in_headless_chromium(report_html, tmp_path):
  page = tmp_path / "report.html"
  page.write_text(report_html)
  result, requests = open_in_chromium(page, tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  root = re.search(r"<html[^>]*>", result.stdout).group(0)
  marks = dict(re.findall(r'([\w-]+)="([^"]*)"', root))
  count = str(report_html.count("<img "))
  assert (marks.get("data-images"), marks.get("data-images-loaded")) == (count, count), root
  assert marks.get("data-requests") == "" and "data-blocked" not in marks, root
  assert [line for line in result.stderr.splitlines() if ":CONSOLE" in line] == []
  assert requests == []
  with Image.open(tmp_path / "page.png") as shot:
    assert shot.size == (1200, 2000) and np.asarray(shot.convert("L")).std() > 20


def test_the_net_log_check_sees_a_page_that_fetches(tmp_path):
  """The check above is not vacuous: a page with a network image is caught."""
  page = tmp_path / "fetching.html"
  page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/face.png">'
                  "</body></html>")
  result, requests = open_in_chromium(page, tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert requests == ["http://127.0.0.1:9/face.png"]
