"""A training start (gan_jax/start.py): checks, lock, log file and run record, each once."""

import collections
import io
import logging

import pytest

import conftest
from gan_jax import console, run_record, start, workdir_lock
from gan_jax.config import checks
from gan_jax.errors import UserError


def count_calls(monkeypatch, calls, module, name):
  original = getattr(module, name)

  def counted(*args, **kwargs):
    calls[name] += 1
    return original(*args, **kwargs)

  monkeypatch.setattr(module, name, counted)


def test_a_start_sets_up_the_process_once_then_trains(tmp_path, monkeypatch, caplog):
  caplog.set_level(logging.INFO, logger="absl")  # other tests' commands may have quietened it
  calls = collections.Counter()
  for module, name in ((checks, "check_start"), (workdir_lock, "hold"),
                       (run_record, "append")):
    count_calls(monkeypatch, calls, module, name)
  shown = io.StringIO()
  run_console = console.Console(stream=shown)
  try:
    with pytest.raises(UserError, match="unused"):  # the loop stops at the data
      start.run(conftest.tiny_config(), tmp_path / "run", run_console,
                "configs/tiny.py with --config.data.path=unused")
  finally:
    run_console.close()
  assert calls == {"check_start": 1, "hold": 1, "append": 1}
  assert len(run_record.read(tmp_path / "run")) == 1
  log = (tmp_path / "run" / console.LOG_FILE).read_text()
  assert log.count("] config:\n") == 1 and "  latent_dim: " in log  # the whole config: the file
  assert "config configs/tiny.py with --config.data.path=unused" in shown.getvalue()
  assert "latent_dim" not in shown.getvalue()
  assert not (tmp_path / "run" / workdir_lock.HOLDER_FILE).exists()  # released at the error
