"""Every bad input stops with one clear message (asserted here) and leaves nothing half-written."""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import conftest
from gan_jax import start
from gan_jax.config import checks
from gan_jax.data import pipeline as input_pipeline
from gan_jax.data import prepare
from gan_jax.data import loader as data_loader
from gan_jax.errors import ConfigError

REPO_ROOT = conftest.REPO_ROOT


def save_jpg(path: pathlib.Path, size=(20, 24), color=(120, 60, 30)) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new("RGB", size, color).save(path, quality=95)
  return path


def run_prepare(source, out, resolution=8):
  return prepare.prepare(source, resolution, "center", out, progress=False)


def assert_nothing_written(out: pathlib.Path):
  assert not out.exists() or os.listdir(out) == []


def test_missing_path(tmp_path):
  with pytest.raises(prepare.DataError, match=r"data path '.*nowhere' does not exist; set "
                     r"--config.data.path to a folder of face images"):
    data_loader.training_images(tmp_path / "nowhere", 16)
  with pytest.raises(prepare.DataError, match=r"source folder '.*nowhere' does not exist"):
    run_prepare(f"folder:{tmp_path / 'nowhere'}", tmp_path / "out")
  with pytest.raises(prepare.DataError, match=r"data.path is empty; set --config.data.path"):
    data_loader.training_images("", 16)
  assert_nothing_written(tmp_path / "out")


def test_missing_path_on_the_command_line_is_one_line_without_traceback(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "gan_jax.prepare", "--source", f"folder:{tmp_path / 'nowhere'}",
       "--resolution", "8", "--out", str(tmp_path / "out")],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"error: source folder '{tmp_path / 'nowhere'}' does not exist; give a folder of face images"]
  assert_nothing_written(tmp_path / "out")


def test_bad_source_and_crop(tmp_path):
  with pytest.raises(prepare.DataError, match=r"--source 'faces' is not folder:DIR, npy:FILE or "
                     r"tfds:NAME"):
    run_prepare("faces", tmp_path / "out")
  save_jpg(tmp_path / "src" / "a.jpg")
  with pytest.raises(prepare.DataError, match=r"unknown crop 'square'; use one of center, celeba"):
    prepare.prepare(f"folder:{tmp_path / 'src'}", 8, "square", tmp_path / "out")
  assert_nothing_written(tmp_path / "out")


def test_empty_folder(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(prepare.DataError, match=r"no image files \(.jpg, .png, ...\) found under "
                     r".*empty: the folder is empty"):
    run_prepare(f"folder:{tmp_path / 'empty'}", tmp_path / "out")
  with pytest.raises(prepare.DataError, match=r"the folder is empty"):
    data_loader.training_images(tmp_path / "empty", 16, cache_dir=tmp_path / "cache")
  assert_nothing_written(tmp_path / "out")
  assert_nothing_written(tmp_path / "cache")


def test_folder_without_image_files(tmp_path):
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "readme.txt").write_text("faces go here")
  with pytest.raises(prepare.DataError, match=r"found under .*docs: it holds only 1 other "
                     r"file\(s\), e.g. readme.txt"):
    run_prepare(f"folder:{tmp_path / 'docs'}", tmp_path / "out")


def test_folder_with_no_decodable_image(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  (src / "a.jpg").write_text("a text file named .jpg")
  (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
  with pytest.raises(prepare.DataError, match=r"none of the 2 image files under .*src could be "
                     r"decoded; check that they are image files \(e.g. a.jpg: cannot identify "
                     r"image file"):
    run_prepare(f"folder:{src}", tmp_path / "out")
  assert_nothing_written(tmp_path / "out")   # no array, no metadata, no temporary files
  with pytest.raises(prepare.DataError, match=r"none of the 2 image files"):
    data_loader.training_images(src, 8, cache_dir=tmp_path / "cache")
  assert [p for p in (tmp_path / "cache").iterdir()] == []


def test_truncated_jpg_is_skipped_listed_and_counted(tmp_path):
  src = tmp_path / "src"
  good = [save_jpg(src / f"{i}.jpg", color=(40 * i, 0, 0)) for i in range(2)]
  (src / "cut.jpg").write_bytes(good[0].read_bytes()[:300])
  with pytest.warns(UserWarning, match=r"skipped 1 of 3 images that could not be decoded: "
                    r"cut.jpg \(.*\) \(all are listed in .*metadata.json\)"):
    prepared = run_prepare(f"folder:{src}", tmp_path / "out")
  assert prepared.images.shape == (2, 8, 8, 3)
  assert prepared.metadata["num_skipped"] == 1 and prepared.metadata["count"] == 2
  [skipped] = prepared.metadata["skipped"]
  assert skipped["file"] == "cut.jpg" and skipped["reason"]
  # Only a truncated file left: nothing usable, so an error.
  for file in good:
    file.unlink()
  with pytest.raises(prepare.DataError, match=r"none of the 1 image files under .*src could be "
                     r"decoded"):
    run_prepare(f"folder:{src}", tmp_path / "out2")


def test_text_file_named_jpg_is_skipped(tmp_path):
  src = tmp_path / "src"
  save_jpg(src / "face.jpg")
  (src / "notes.jpg").write_text("these are notes, not a photo")
  with pytest.warns(UserWarning, match=r"skipped 1 of 2 images .*notes.jpg \(cannot identify "
                    r"image file"):
    prepared = run_prepare(f"folder:{src}", tmp_path / "out")
  assert len(prepared.images) == 1
  assert "cannot identify image file" in prepared.metadata["skipped"][0]["reason"]


def test_one_and_four_channel_images(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  Image.new("L", (10, 10), 200).save(src / "gray.png")
  Image.new("RGBA", (10, 10), (0, 0, 255, 255)).save(src / "rgba.png")
  Image.new("LA", (10, 10), (50, 255)).save(src / "gray_alpha.png")
  prepared = run_prepare(f"folder:{src}", tmp_path / "out")
  images = prepared.images
  assert images.shape == (3, 8, 8, 3)
  assert (images[0] == 200).all() and (images[1] == 50).all()   # gray, gray_alpha
  assert (images[2] == (0, 0, 255)).all()
  # A training array must already be RGB: a 1- or 4-channel .npy says how to fix it.
  for channels in (1, 4):
    np.save(tmp_path / f"c{channels}.npy", np.zeros((4, 8, 8, channels), np.uint8))
    with pytest.raises(prepare.DataError, match=rf"c{channels}.npy holds uint8 \(4, 8, 8, "
                       rf"{channels}\); expected uint8 \(N, H, W, 3\) images. Make one with "
                       r"`python -m gan_jax.prepare --source npy:FILE`"):
      data_loader.training_images(tmp_path / f"c{channels}.npy", 8)
    assert run_prepare(f"npy:{tmp_path / f'c{channels}.npy'}", tmp_path / f"o{channels}",
                       ).images.shape == (4, 8, 8, 3)


def test_tiny_images_warn_but_are_used(tmp_path):
  src = tmp_path / "src"
  save_jpg(src / "big.jpg", size=(40, 40))
  save_jpg(src / "small.jpg", size=(6, 9))
  with pytest.warns(UserWarning, match=r"1 of 2 images are smaller than 16x16 after cropping "
                    r"\(smallest: small.jpg, 6x6\); they were upscaled and will look blurry"):
    prepared = run_prepare(f"folder:{src}", tmp_path / "out", resolution=16)
  assert prepared.images.shape == (2, 16, 16, 3) and prepared.metadata["num_upscaled"] == 1


def test_prepared_data_of_the_wrong_resolution(tmp_path):
  save_jpg(tmp_path / "src" / "a.jpg")
  run_prepare(f"folder:{tmp_path / 'src'}", tmp_path / "p8", resolution=8)
  message = (r"images.npy holds 8x8 images but data.resolution is 16; prepare it at 16 px "
             r"\(--resolution 16\) or set --config.data.resolution=8")
  with pytest.raises(prepare.DataError, match=message):
    data_loader.training_images(tmp_path / "p8", 16)
  with pytest.raises(prepare.DataError, match=message):
    data_loader.training_images(tmp_path / "p8" / "images.npy", 16)


def test_prepared_data_of_the_wrong_dtype(tmp_path):
  np.save(tmp_path / "floats.npy", np.zeros((4, 8, 8, 3), np.float32))
  with pytest.raises(prepare.DataError, match=r"floats.npy holds float32 \(4, 8, 8, 3\); expected "
                     r"uint8 \(N, H, W, 3\) images"):
    data_loader.training_images(tmp_path / "floats.npy", 8)
  with pytest.raises(prepare.DataError, match=r"an npy source must be uint8"):
    run_prepare(f"npy:{tmp_path / 'floats.npy'}", tmp_path / "out")


def test_interrupted_prepared_directory(tmp_path):
  (tmp_path / "half").mkdir()
  np.save(tmp_path / "half" / "images.npy", np.zeros((4, 8, 8, 3), np.uint8))
  with pytest.raises(prepare.DataError, match=r"holds images.npy but no metadata.json: its "
                     r"preparation was interrupted"):
    data_loader.training_images(tmp_path / "half", 8)


def test_not_a_npy_file(tmp_path):
  (tmp_path / "faces.zip").write_bytes(b"PK")
  with pytest.raises(prepare.DataError, match=r"faces.zip is a file but not a .npy array"):
    data_loader.training_images(tmp_path / "faces.zip", 8)


def test_batch_not_divisible_by_the_devices(tmp_path):
  np.save(tmp_path / "faces.npy", np.zeros((40, 8, 8, 3), np.uint8))
  config = conftest.tiny_config(data__path=str(tmp_path / "faces.npy"), data__resolution=8,
                                train__batch_size=12, train__num_steps=1)
  with pytest.raises(ValueError, match=r"train.batch_size=12 is not divisible by the 8 devices; "
                     r"use a multiple of 8 \(e.g. --config.train.batch_size=8\)"):
    start.run(config, tmp_path / "run")


def test_batch_larger_than_the_data_set(tmp_path):
  np.save(tmp_path / "faces.npy", np.zeros((20, 8, 8, 3), np.uint8))
  config = conftest.tiny_config(data__path=str(tmp_path / "faces.npy"), data__resolution=8,
                                train__batch_size=32, train__num_steps=1)
  message = (r"train.batch_size=32 is larger than the data set \(20 images\); lower the batch "
             r"size or add images")
  with pytest.raises(ValueError, match=message):
    start.run(config, tmp_path / "run")
  with pytest.raises(ValueError, match=message):
    next(input_pipeline.numpy_batches(np.zeros((20, 8, 8, 3), np.uint8), 32, seed=0))


# --- refused at start, before the workdir gets anything ---

@pytest.mark.parametrize("train_options,message", [
    ({"train.batch_size": 0}, "train.batch_size=0 must be >= 1"),
    ({"train.batch_size": -8}, "train.batch_size=-8 must be >= 1"),
    ({"train.num_steps": -5}, "train.num_steps=-5 must be >= 0"),
])
def test_batch_size_and_num_steps_out_of_range_are_refused_at_start(tmp_path, train_options,
                                                                    message):
  # data.path is "unused": the start stops before reading any data.
  with pytest.raises(ConfigError, match=re.escape(message)):
    start.run(conftest.tiny_config(train_options), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_minibatch_std_group_not_dividing_the_per_device_batch_is_refused_at_start(tmp_path):
  config = conftest.tiny_config(train__batch_size=24)  # 3 images per device on the 8 test devices
  config.model.d_minibatch_std, config.model.d_minibatch_std_group = True, 2
  message = ("model.d_minibatch_std_group=2 must divide the per-device batch (24 / 8 devices = "
             "3)")
  with pytest.raises(ConfigError, match=re.escape(message)):
    checks.check_start(config, num_devices=8)
  with pytest.raises(ConfigError, match=re.escape(message)):
    start.run(config, tmp_path / "run")  # before the data (data.path unused)
  assert not (tmp_path / "run").exists()
  checks.check_start(config, num_devices=1)  # 24 images on one device: groups of 2 fit ...
  config.model.d_minibatch_std_group = 4
  checks.check_start(config, num_devices=8)  # ... and a group larger than 3 takes all 3


def test_a_refused_start_leaves_no_run_json_or_log_txt(tmp_path):
  earlier, fresh = tmp_path / "earlier_run", tmp_path / "fresh"
  earlier.mkdir()
  (earlier / "run.json").write_text('{"starts": []}\n')  # an earlier run's files stay as they were
  (earlier / "log.txt").write_text("an earlier run's log\n")
  for workdir in (earlier, fresh):
    result = subprocess.run(
        [sys.executable, *conftest.MAIN_WITHOUT_TENSORFLOW, "--config",
         str(REPO_ROOT / "configs" / "tiny.py"), "--workdir", str(workdir),
         "--config.data.path=unused", "--config.train.num_steps=-5"],
        cwd=tmp_path, env=conftest.subprocess_env(1), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.splitlines() == ["error: train.num_steps=-5 must be >= 0"]
  assert sorted(os.listdir(earlier)) == ["log.txt", "run.json"]
  assert (earlier / "log.txt").read_text() == "an earlier run's log\n"
  assert (earlier / "run.json").read_text() == '{"starts": []}\n'
  assert not fresh.exists()
