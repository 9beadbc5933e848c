"""docs/tutorial.md's commands still work: each one is read from the page and run, small.

The commands come from the page's ```bash blocks, in order, and run as the page gives them
except for sizes and places: the photo folder becomes a few dozen of the real faces, /tmp/tutorial
a temporary folder, 32 px becomes 16 px, the networks a few channels wide and each training run
two steps. So a renamed flag, a moved output or a command that no longer runs fails here.
"""

import concurrent.futures
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, subprocess_env

TUTORIAL = REPO_ROOT / "docs" / "tutorial.md"
PHOTOS = "../shared/data/celeba6k"  # the page's folder of photos
PLACE = "/tmp/tutorial"              # where the page puts everything it makes

NUM_PHOTOS = 40  # the first photos of the folder, plus those the page names
# What each kind of command becomes at the test's size.
FLAG_VALUES = {
    "gan_jax.prepare": {"--resolution": "16", "--holdout": "8"},
}
TINY_TRAINING = {
    "data.resolution": "16", "model.width": "8", "model.latent_dim": "16",
    "train.batch_size": "8", "train.num_steps": "2", "log_every": "1", "sample_every": "2",
    "checkpoint_every": "2",
}


def page_commands() -> list[list[str]]:
  """Every command of the page's ```bash blocks, as argument lists (comments dropped)."""
  commands = []
  for block in re.findall(r"^```bash\n(.*?)^```", TUTORIAL.read_text(), re.S | re.M):
    for line in block.replace("\\\n", " ").splitlines():
      words = shlex.split(line, comments=True)
      if words:
        commands.append(words)
  return commands


def small(words: list[str], photos: pathlib.Path, place: pathlib.Path) -> list[str]:
  """A page command at the test's size, its paths moved to the test's folders."""
  words = [w.replace(PHOTOS, str(photos)).replace(PLACE, str(place)) for w in words]
  module = words[2]
  values = FLAG_VALUES.get(module, {})
  words = [values.get(words[i - 1], w) if i else w for i, w in enumerate(words)]
  if module == "gan_jax.main":
    pending = dict(TINY_TRAINING)
    for i, word in enumerate(words):
      key = word.split("=")[0].removeprefix("--config.")
      if word.startswith("--config.") and key in pending:
        words[i] = f"--config.{key}={pending.pop(key)}"
    words += [f"--config.{key}={value}" for key, value in pending.items()]
  return [sys.executable, *words[1:]]


def flag(words: list[str], name: str) -> str | None:
  return words[words.index(name) + 1] if name in words else None


def test_the_page_shows_its_commands_and_pictures():
  commands = page_commands()
  modules = [words[2] for words in commands if words[:2] == ["python", "-m"]]
  assert {"gan_jax.prepare", "gan_jax.main", "gan_jax.generate", "gan_jax.interpolate",
          "gan_jax.nearest", "gan_jax.reconstruct"} <= set(modules)
  for words in commands:  # nothing the test below would not know how to run
    assert words[:2] == ["python", "-m"] or words[0] == "tensorboard", words
  pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", TUTORIAL.read_text())
  assert pictures
  for picture in pictures:
    assert picture.startswith("img/tutorial/"), picture
    assert (TUTORIAL.parent / picture).is_file(), picture


def chains(commands: list[list[str]]) -> tuple[list[list[str]], list[list[list[str]]]]:
  """The page's commands split where their order does not matter: those without a --workdir
  (preparing the photos), which come first, and one chain per --workdir (its training run,
  then what reads the run), each in the page's order."""
  first, by_workdir = [], {}
  for words in commands:
    workdir = flag(words, "--workdir") or flag(words, "--logdir")
    if workdir is None:
      assert not by_workdir, ("a command without a workdir after the runs", words)
      first.append(words)
    else:
      by_workdir.setdefault(workdir, []).append(words)
  return first, list(by_workdir.values())


def run_chain(chain: list[list[str]], photos: pathlib.Path, place: pathlib.Path) -> None:
  env = subprocess_env(1)
  for words in chain:
    if words[0] == "tensorboard":  # a server: check only that it would have something to show
      logdir = pathlib.Path(flag(words, "--logdir").replace(PLACE, str(place)))
      assert list(logdir.glob("events.out.tfevents.*")), words
      continue
    command = small(words, photos, place)
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, (shlex.join(words), result.stderr[-3000:])
    if words[2] == "gan_jax.main":
      assert list(pathlib.Path(flag(command, "--workdir"), "checkpoints").iterdir()), words
    out = flag(command, "--out")
    assert out is None or pathlib.Path(out).exists(), (shlex.join(words), result.stdout[-2000:])


@pytest.mark.slow
def test_the_page_commands_run(faces_dir, tmp_path):
  # The photo folder: its first photos, and the ones the page names (they sort last, so
  # they are among the held-out ones, as on the page).
  photos = tmp_path / "photos"
  photos.mkdir()
  named = set(re.findall(re.escape(PHOTOS) + r"/([\w.-]+)", TUTORIAL.read_text()))
  for name in sorted(set(sorted(os.listdir(faces_dir))[:NUM_PHOTOS]) | named):
    (photos / name).symlink_to(faces_dir / name)
  place = tmp_path / "tutorial"
  place.mkdir()
  first, runs = chains(page_commands())
  run_chain(first, photos, place)
  # The training runs and their commands side by side: most of the time is XLA compiling,
  # one core each.
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    for done in [pool.submit(run_chain, chain, photos, place) for chain in runs]:
      done.result()
