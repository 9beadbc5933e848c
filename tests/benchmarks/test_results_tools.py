"""The tools behind docs/results.md: the row runner, the PyTorch baseline trainer and the
FID feature-extraction speed command."""

import json
import re
import sys
import types

import numpy as np
import pytest

from conftest import REPO_ROOT, save_steps, tiny_config
from gan_jax.config import checks as config_checks
from gan_jax.metrics import inception

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import results  # noqa: E402  pylint: disable=wrong-import-position


def results_args(out):
  """The command line benchmarks/results.py parses, as the row commands read it."""
  return types.SimpleNamespace(out=out, faces="/faces", images=512_000, num_samples=5000,
                               eval_batch=250, holdout=1000)


def load_config(path):
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("row_config", REPO_ROOT / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize("row", [r for r in results.ROWS if r.config != "torch"],
                         ids=lambda r: r.name)
def test_every_row_is_a_valid_run_of_its_config(row, tmp_path):
  args = results_args(tmp_path)
  train, evaluate, generate = results.commands(row, args)
  assert "--config.data.holdout=1000" in train  # --holdout sets the faces aside in every row
  config = load_config(row.config)
  # The row's resolution and batch are its config's: equal images seen per resolution.
  assert (config.data.resolution, config.train.batch_size) == (row.resolution, row.batch)
  assert f"--config.train.num_steps={512_000 // row.batch}" in train
  for override in row.overrides:  # every override names an existing option, with its type
    key, value = override.split("=")
    node = config
    *parents, leaf = key.split(".")
    for name in parents:
      node = node[name]
    assert leaf in node, override
    node[leaf] = type(node[leaf])(value == "True" if isinstance(node[leaf], bool) else value)
  config.data.path = "/faces"
  config_checks.validate_config(config)
  assert evaluate[3:5] == ["run", "--workdir"] and "--one_nn" in evaluate
  assert generate[2] == "gan_jax.generate"


def test_collapse_warnings_are_the_steps_each_detector_turned_on(tmp_path):
  records = [{"step": 50, "collapse/d_overpowering": 0.0},
             {"step": 100, "collapse/d_overpowering": 1.0},
             {"step": 150, "collapse/d_overpowering": 1.0, "collapse/mode_collapse": 0.0},
             {"step": 200, "collapse/d_overpowering": 0.0},
             {"step": 250, "collapse/d_overpowering": 1.0, "collapse/mode_collapse": 1.0},
             {"step": 300, "d_loss": 1.0}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  assert results.collapse_warnings(tmp_path) == {"d_overpowering": [100, 250],
                                                 "mode_collapse": [250]}
  assert results.collapse_warnings(tmp_path / "missing") == {"d_overpowering": [],
                                                             "mode_collapse": []}


def test_row_metrics_come_from_the_last_step(tmp_path):
  row = results.Row("x", "configs/celeba64.py", 64, 128)
  (tmp_path / "eval").mkdir()
  for step, fid in ((4000, 50.0), (16000, 40.0)):
    metrics = {"step": step, "fid": fid, "kid_mean": 0.1, "kid_std": 0.01,
               "one_nn_accuracy": 0.9, "num_samples": 10, "num_real": 20, "ema": False}
    (tmp_path / "eval" / f"metrics_step_{step}.json").write_text(json.dumps(metrics))
  (tmp_path / "eval" / "metrics_step_99999_pixels.json").write_text("{}")  # not Inception
  assert results.metrics_of(row, tmp_path)["fid"] == 40.0
  assert "fid_heldout" not in results.metrics_of(row, tmp_path)


def test_row_carries_the_held_out_metrics_when_evaluated_with_them(tmp_path):
  row = results.Row("x", "configs/celeba64.py", 64, 128)
  (tmp_path / "eval").mkdir()
  metrics = {"step": 10, "fid": 50.0, "kid_mean": 0.1, "kid_std": 0.01, "one_nn_accuracy": 0.9,
             "num_samples": 10, "num_real": 20, "ema": False, "fid_heldout": 52.0,
             "kid_heldout": 0.11, "fid_floor_heldout": 19.6, "num_heldout": 20}
  (tmp_path / "eval" / "metrics_step_10.json").write_text(json.dumps(metrics))
  got = results.metrics_of(row, tmp_path)
  assert (got["fid_heldout"], got["kid_heldout"], got["fid_floor_heldout"],
          got["num_heldout"]) == (52.0, 0.11, 19.6, 20)


def test_torch_row_sets_the_same_faces_aside_and_measures_against_them(tmp_path):
  row = next(r for r in results.ROWS if r.config == "torch")
  args = results_args(tmp_path)
  prepare, train, fid_train, fid_heldout, floor = results.commands(row, args)
  prepared = str(tmp_path / f"prepared{row.resolution}_holdout1000")
  assert prepare[-4:] == ["--out", prepared, "--holdout", "1000"]
  assert train[train.index("--data") + 1] == f"{prepared}/images.npy"  # training faces only
  assert fid_train[4] == f"{prepared}/images.npy" and "--one_nn" in fid_train
  assert fid_heldout[4:6] == [f"{prepared}/heldout.npy", f"{tmp_path / row.name}/samples.npy"]
  # The floor: as many training faces as samples against the held-out faces.
  assert floor[4:6] == [f"{prepared}/heldout.npy", f"{prepared}/images.npy"]
  assert floor[floor.index("--limit") + 1] == "5000"
  args.holdout = 0  # without held-out faces: the whole set, and no held-out evaluations
  assert [c[c.index("--out") + 1] for c in results.commands(row, args)
          if "gan_jax.prepare" in c] == [str(tmp_path / f"prepared{row.resolution}")]
  assert len(results.commands(row, args)) == 3


def test_torch_row_metrics_carry_the_held_out_ones(tmp_path):
  row = next(r for r in results.ROWS if r.config == "torch")
  metrics = {"fid": 60.0, "kid": 0.06, "kid_std": 0.001, "one_nn_accuracy": 0.98,
             "num_real": 5000, "num_fake": 5000}
  (tmp_path / "metrics.json").write_text(json.dumps(metrics))
  (tmp_path / "train.json").write_text(json.dumps({"images_seen": 512_000, "img_per_s": 5e3}))
  assert "fid_heldout" not in results.metrics_of(row, tmp_path)
  (tmp_path / "metrics_heldout.json").write_text(json.dumps(
      dict(metrics, fid=62.0, kid=0.07, num_real=1000)))
  (tmp_path / "metrics_floor.json").write_text(json.dumps(
      dict(metrics, fid=19.5, kid=0.002, num_real=1000)))
  got = results.metrics_of(row, tmp_path)
  assert (got["fid"], got["fid_heldout"], got["kid_heldout"], got["fid_floor_heldout"],
          got["num_heldout"], got["num_floor"]) == (60.0, 62.0, 0.07, 19.5, 1000, 5000)


def test_results_rejects_unknown_rows_and_missing_faces(tmp_path, capsys):
  with pytest.raises(SystemExit):
    results.main(["--faces", str(tmp_path), "--out", str(tmp_path / "o"), "--only", "celeba65"])
  assert "unknown rows ['celeba65']" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    results.main(["--faces", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
  assert "is not a folder of face photos" in capsys.readouterr().err


def test_torch_baseline_trains_and_writes_samples(tmp_path):
  torch = pytest.importorskip("torch", reason="PyTorch is not a gan_jax dependency")
  import torch_train  # pylint: disable=import-outside-toplevel
  faces = np.random.RandomState(0).randint(0, 256, (70, 32, 32, 3), np.uint8)
  np.save(tmp_path / "faces.npy", faces)
  samples = []
  for name in ("a", "b"):
    assert torch_train.main(["--data", str(tmp_path / "faces.npy"), "--images", "160",
                             "--batch", "32", "--device", "cpu", "--num_samples", "20",
                             "--log_every", "2", "--out", str(tmp_path / name)]) == 0
    samples.append(np.load(tmp_path / name / "samples.npy"))
  assert samples[0].shape == (20, 32, 32, 3) and samples[0].dtype == np.uint8
  np.testing.assert_array_equal(samples[0], samples[1])  # seeded: the same run twice
  train = json.loads((tmp_path / "a" / "train.json").read_text())
  # 160 images at batch 32 = 5 steps, over epochs of 70 // 32 = 2 batches.
  assert train["images_seen"] == 160 and train["steps"] == 5 and train["num_faces"] == 70
  assert [loss["step"] for loss in train["losses"]] == [2, 4, 5]
  assert (tmp_path / "a" / "grid.png").exists()
  del torch


def test_torch_baseline_rejects_a_wrong_array(tmp_path):
  pytest.importorskip("torch", reason="PyTorch is not a gan_jax dependency")
  import torch_train  # pylint: disable=import-outside-toplevel
  np.save(tmp_path / "bad.npy", np.zeros((4, 32, 32), np.float32))
  with pytest.raises(SystemExit, match="expected uint8 \\(N, H, W, 3\\) faces"):
    torch_train.main(["--data", str(tmp_path / "bad.npy"), "--images", "8", "--out",
                      str(tmp_path / "o"), "--device", "cpu"])


def test_inception_speed_command(tmp_path, capsys):
  out = tmp_path / "speed.json"
  assert inception.main(["--images", "2", "--batch", "2", "--size", "16", "--repeats", "1",
                         "--random_weights", "--json", str(out)]) == 0
  assert "images/s (2 images of 16 px, batch 2" in capsys.readouterr().out
  result = json.loads(out.read_text())
  assert result["images_per_s"] > 0 and len(result["seconds"]) == 1
  assert result["device"].startswith("cpu") and result["random_weights"]
  assert inception.main(["--images", "1", "--batch", "2"]) == 1  # a user error: cli's exit code
  assert "need --images (1) >= --batch (2)" in capsys.readouterr().err


def test_heldout_curve_checks_every_checkpoint_before_reading_faces(tmp_path, capsys):
  import heldout_curve  # pylint: disable=import-outside-toplevel
  save_steps(tmp_path / "run", tiny_config(), [5])
  missing_faces = tmp_path / "no_faces_here"  # the faces are read only after the check
  for workdir, said in [(tmp_path / "no_run", "train first"),
                        (tmp_path / "run", "no checkpoint for step 10 .* available steps: 5")]:
    with pytest.raises(SystemExit) as stop:
      heldout_curve.main(["--faces", str(missing_faces), "--runs", str(workdir),
                          "--steps", "10"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert re.search(said, err) and str(workdir) in err and "Traceback" not in err
