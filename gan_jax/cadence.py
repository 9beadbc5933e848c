"""When a periodic action of the training loop (log, sample, save, evaluate) is due."""

from __future__ import annotations


def is_due(step: int, every: int, last_step: int | None = None) -> bool:
  """True every `every` steps and at `last_step`; never when `every` is 0 (the action is off)."""
  return every > 0 and (step % every == 0 or step == last_step)
