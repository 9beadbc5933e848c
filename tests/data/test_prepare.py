"""Preparing face arrays: decoding, colour modes, EXIF, metadata, atomic writes, the cache."""

import hashlib
import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from gan_jax.data import prepare, prepared_files
from gan_jax.data import decode
from gan_jax.data import loader as data_loader


def save(path: pathlib.Path, mode: str, size=(12, 10), color=None, **kwargs) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new(mode, size, color).save(path, **kwargs)
  return path


def test_folder_to_array_and_metadata(tmp_path):
  src = tmp_path / "faces"
  save(src / "a.jpg", "RGB", color=(200, 30, 40), quality=95)
  save(src / "nested" / "deeper" / "b.png", "L", color=90)               # 1 channel
  save(src / "c.png", "RGBA", color=(10, 200, 10, 0))                     # 4 channels, transparent
  save(src / "d.tif", "CMYK", color=(0, 0, 0, 0))                          # CMYK white
  save(src / "e.gif", "P", color=3)                                       # palette
  (src / "notes.txt").write_text("not an image")                          # ignored: not an image
  (src / ".hidden.jpg").write_bytes(b"resource fork")                     # ignored: hidden

  prepared = prepare.prepare(f"folder:{src}", 8, "center", tmp_path / "out", progress=False)
  images, meta = prepared.images, prepared.metadata
  assert images.shape == (5, 8, 8, 3) and images.dtype == np.uint8
  assert isinstance(images, np.memmap)
  np.testing.assert_allclose(images[0].mean((0, 1)), (200, 30, 40), atol=3)   # a.jpg first
  assert (images[1] == 255).all()                                        # c.png: transparency on white
  assert (images[2] == 255).all()                                        # d.tif: CMYK white
  assert (images[4] == 90).all()                                         # nested/deeper/b.png: gray
  assert meta["source"] == f"folder:{src.resolve()}"
  assert (meta["count"], meta["resolution"], meta["crop"]) == (5, 8, "center")
  assert meta["resize_filter"] == "lanczos" and meta["skipped"] == [] and meta["shape"] == [5, 8, 8, 3]
  assert meta["sha256"] == hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
  on_disk = json.loads((tmp_path / "out" / "metadata.json").read_text())
  assert on_disk["sha256"] == meta["sha256"]
  assert sorted(os.listdir(tmp_path / "out")) == ["images.npy", "metadata.json"]
  # The plain loader (used by the metrics) reads the same pixels.
  np.testing.assert_array_equal(data_loader.load_image_array(src, 8), images)
  np.testing.assert_array_equal(data_loader.load_image_array(tmp_path / "out", 8), images)


def test_exif_orientation_is_applied(tmp_path):
  pixels = np.zeros((10, 20, 3), np.uint8)
  pixels[:, :10] = (255, 0, 0)   # left half red
  pixels[:, 10:] = (0, 0, 255)   # right half blue
  exif = Image.Exif()
  exif[0x0112] = 6               # "rotate 90 clockwise to display"
  Image.fromarray(pixels).save(tmp_path / "rotated.png", exif=exif)
  upright = decode.load_image(tmp_path / "rotated.png", 4, crop="none")
  # Turned clockwise, the red left half is on top (unturned, the left column would be red).
  assert (upright[0, :, 0] > 200).all() and (upright[0, :, 2] < 50).all()
  assert (upright[-1, :, 2] > 200).all() and (upright[-1, :, 0] < 50).all()


def test_celeba_crop_box():
  assert decode.crop_box(178, 218, "celeba") == (35, 35, 143, 143)  # 108 px, 20 px above centre
  assert decode.crop_box(89, 109, "center") == (0, 10, 89, 99)
  assert decode.crop_box(89, 109, "none") is None


def test_worker_processes_give_the_same_array(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  (tmp_path / "src").mkdir()
  for i in range(6):
    Image.fromarray(rng.integers(0, 256, (9, 11, 3), np.uint8)).save(tmp_path / "src" / f"{i}.png")
  serial = prepare.prepare(f"folder:{tmp_path / 'src'}", 8, out_dir=tmp_path / "serial",
                           workers=1, progress=False)
  monkeypatch.setattr(decode, "MIN_FILES_FOR_POOL", 1)
  pooled = prepare.prepare(f"folder:{tmp_path / 'src'}", 8, out_dir=tmp_path / "pooled",
                           workers=2, progress=False)
  np.testing.assert_array_equal(serial.images, pooled.images)
  assert serial.metadata["sha256"] == pooled.metadata["sha256"]


def test_npy_source_of_gray_and_rgba_arrays(tmp_path):
  gray = np.full((3, 10, 10), 77, np.uint8)
  np.save(tmp_path / "gray.npy", gray)
  prepared = prepare.prepare(f"npy:{tmp_path / 'gray.npy'}", 5, out_dir=tmp_path / "g",
                             progress=False)
  assert prepared.images.shape == (3, 5, 5, 3) and (prepared.images == 77).all()
  rgba = np.zeros((2, 6, 6, 4), np.uint8)   # transparent black -> white
  np.save(tmp_path / "rgba.npy", rgba)
  prepared = prepare.prepare(f"npy:{tmp_path / 'rgba.npy'}", 6, out_dir=tmp_path / "r",
                             progress=False)
  assert prepared.images.shape == (2, 6, 6, 3) and (prepared.images == 255).all()


def test_interrupted_prepare_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
  for i in range(5):
    save(tmp_path / "src" / f"{i}.png", "RGB", color=(i, i, i))
  decode_file, calls = decode.decode_file, []

  def interrupted(*args):
    calls.append(args)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return decode_file(*args)

  monkeypatch.setattr(decode, "decode_file", interrupted)
  with pytest.raises(KeyboardInterrupt):
    prepare.prepare(f"folder:{tmp_path / 'src'}", 4, out_dir=tmp_path / "out", progress=False)
  assert os.listdir(tmp_path / "out") == []   # no array, no metadata, no temporary files
  assert not prepared_files.is_prepared(tmp_path / "out")


def test_training_images_prepares_a_folder_once_and_reuses_it(tmp_path, monkeypatch):
  src, cache = tmp_path / "src", tmp_path / "cache"
  for i in range(4):
    save(src / f"{i}.png", "RGB", color=(10 * i, 0, 0))
  first = data_loader.training_images(src, 8, "center", cache_dir=cache)
  assert first.shape == (4, 8, 8, 3)
  [entry] = [p for p in cache.iterdir()]
  assert prepared_files.is_prepared(entry) and entry.name.startswith("src-8px-center-")

  def must_not_prepare(*args, **kwargs):
    raise AssertionError("the cached array should have been reused")

  with monkeypatch.context() as patch:
    patch.setattr(prepare, "prepare", must_not_prepare)
    np.testing.assert_array_equal(data_loader.training_images(src, 8, "center", cache_dir=cache), first)
  # Another resolution is another entry; a changed folder is prepared again.
  assert data_loader.training_images(src, 4, "center", cache_dir=cache).shape == (4, 4, 4, 3)
  save(src / "9.png", "RGB", color=(0, 0, 0))
  assert data_loader.training_images(src, 8, "center", cache_dir=cache, limit=3).shape == (3, 8, 8, 3)
  assert len(data_loader.training_images(src, 8, "center", cache_dir=cache)) == 5
  assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2
  # A prepared directory and its .npy are accepted directly.
  assert len(data_loader.training_images(entry, 8)) == 5
  assert len(data_loader.training_images(entry / "images.npy", 8)) == 5


def test_command_line(tmp_path, capsys):
  for i in range(3):
    save(tmp_path / "src" / f"{i}.jpg", "RGB", size=(20, 30))
  assert prepare.main(["--source", f"folder:{tmp_path / 'src'}", "--resolution", "8",
                       "--crop", "celeba", "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
  out = capsys.readouterr().out
  assert "prepared 3 images 8x8 (crop celeba, lanczos)" in out and "skipped 0" in out
  assert np.load(tmp_path / "out" / "images.npy").shape == (3, 8, 8, 3)


def test_tfds_sources_with_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=3):
    lfw = prepare.prepare("tfds:lfw", 8, "center", tmp_path / "lfw",
                          tfds_data_dir=str(tmp_path / "tfds"), progress=False)
    celeba = prepare.prepare("tfds:celeb_a", 8, "celeba", tmp_path / "celeba",
                             tfds_data_dir=str(tmp_path / "tfds"), progress=False)
  assert lfw.images.shape == celeba.images.shape == (3, 8, 8, 3)
  assert lfw.metadata["source"] == "tfds:lfw" and celeba.metadata["crop"] == "celeba"
  assert celeba.metadata["tfds_split"] == "train"


def test_real_faces_with_two_corrupt_files(faces_dir, tmp_path):
  """Acceptance 1 on a subset: symlinked real faces plus a truncated and a fake JPEG."""
  src = tmp_path / "faces"
  src.mkdir()
  real = sorted(faces_dir.glob("*.jpg"))[:300]
  for file in real:
    (src / file.name).symlink_to(file)
  (src / "zz_truncated.jpg").write_bytes(real[0].read_bytes()[:600])
  (src / "zz_text.jpg").write_text("this is not a JPEG")
  with pytest.warns(UserWarning, match=r"skipped 2 of 302 images that could not be decoded"):
    prepared = prepare.prepare(f"folder:{src}", 64, "center", tmp_path / "out", progress=False)
  assert prepared.images.shape == (300, 64, 64, 3) and prepared.images.dtype == np.uint8
  meta = prepared.metadata
  assert meta["count"] == 300 and meta["num_skipped"] == 2
  reasons = {s["file"]: s["reason"] for s in meta["skipped"]}
  assert "truncated" in reasons["zz_truncated.jpg"].lower()
  assert "cannot identify image file" in reasons["zz_text.jpg"]
  np.testing.assert_array_equal(prepared.images[17], decode.load_image(real[17], 64, "center"))
