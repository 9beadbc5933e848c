"""Progress bars for a person at a terminal: training steps, Inception features, generated faces.

A bar is drawn (tqdm, on stderr) only when stderr is a terminal and only by
process 0; written to a pipe or a file (CI, `> log`), nothing is drawn and
the log lines alone tell the progress. Log records written through
`gan_jax.console` appear above a bar without breaking it.

    with progress.bar(len(images), "Inception features") as bar:
      for batch in ...:
        bar.update(len(batch))

The training bar (`TrainProgress`) moves with the step count, which the host
knows without asking the device; its losses are those of the last log step,
which the monitor has fetched anyway.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Mapping

import jax
import tqdm

# What the training bar shows of the last log step (the log line has it all): the losses, D's
# outputs as every loss reads them (probabilities, or raw outputs: training/losses.py) and ADA's p.
BAR_METRICS = ("d_loss", "g_loss", "d_real", "d_fake", "d_real_logit", "d_fake_logit", "ada_p")


def on_terminal(stream: IO | None = None) -> bool:
  """Whether bars are drawn on `stream` (default stderr): a terminal, and process 0."""
  stream = sys.stderr if stream is None else stream
  isatty = getattr(stream, "isatty", None)
  try:
    return bool(isatty and isatty()) and jax.process_index() == 0
  except ValueError:  # a closed stream
    return False


def _width(stream: IO) -> dict:
  """tqdm's width options: follow the terminal's width, or 100 columns where it reports none."""
  try:
    size = os.get_terminal_size(stream.fileno())
  except (AttributeError, OSError, ValueError):
    size = os.terminal_size((0, 0))
  # A pseudo-terminal nobody sized (a plain pty, some containers) reports 0 x 0: tqdm drew nothing.
  return {"dynamic_ncols": True} if min(size) > 0 else {"ncols": 100, "nrows": 24}


def bar(total: int, desc: str, unit: str = "img", stream: IO | None = None,
        leave: bool = False) -> tqdm.tqdm:
  """A tqdm bar of `total` units on stderr when it is a terminal; else one that draws nothing."""
  stream = sys.stderr if stream is None else stream
  return tqdm.tqdm(total=total, desc=desc, unit=unit, file=stream, leave=leave,
                   disable=not on_terminal(stream), **_width(stream))


class _StepBar(tqdm.tqdm):
  """tqdm counting steps that also shows images/s (steps/s times the batch size)."""

  def __init__(self, *args, batch_size: int, **kwargs):
    self.batch_size = batch_size  # read by format_dict, which tqdm's __init__ already calls
    super().__init__(*args, **kwargs)

  @property
  def format_dict(self):
    values = super().format_dict
    rate = values["rate"]
    if rate is None and values["elapsed"]:
      rate = (values["n"] - values["initial"]) / values["elapsed"]
    values["images_rate"] = f"{rate * self.batch_size:,.0f} img/s" if rate else "? img/s"
    return values


class TrainProgress:
  """The training bar: step / total, images/s, time left, and the losses of the last log step.

    progress = TrainProgress(num_steps, batch_size, enabled=is_process_0)
    progress.update(step)             # every step: the step count only
    progress.show(step, scalars)      # at log steps: the fetched metrics
    progress.close()

  The bar starts at the first `show`, i.e. after the first step has finished
  (and compiled), so its rate and time left count training steps only.
  """

  FORMAT = ("{desc}{n_fmt}/{total_fmt} steps |{bar}| {percentage:3.0f}% "
            "[{elapsed}<{remaining}, {images_rate}{postfix}]")

  def __init__(self, num_steps: int, batch_size: int, enabled: bool = True,
               stream: IO | None = None):
    self.num_steps, self.batch_size = num_steps, batch_size
    self.stream = sys.stderr if stream is None else stream
    self.enabled = enabled and on_terminal(self.stream)
    self._bar: _StepBar | None = None

  def update(self, step: int) -> None:
    """Move to `step` (host only: redrawn at most every 0.1 s by tqdm)."""
    if self._bar is not None and step > self._bar.n:
      self._bar.update(step - self._bar.n)

  def show(self, step: int, scalars: Mapping[str, float]) -> None:
    """At a log step: the bar (started now if not yet) at `step`, with the latest losses."""
    if not self.enabled:
      return
    if self._bar is None:
      self._bar = _StepBar(total=self.num_steps, initial=step, unit="step", file=self.stream,
                           bar_format=self.FORMAT, smoothing=0.1, batch_size=self.batch_size,
                           **_width(self.stream))
    self.update(step)
    self._bar.set_postfix_str(" ".join(f"{name}={scalars[name]:.3f}" for name in BAR_METRICS
                                       if name in scalars))

  def close(self) -> None:
    """Leave the last state of the bar on the terminal; later calls do nothing."""
    if self._bar is not None:
      self._bar.close()
    self._bar, self.enabled = None, False
