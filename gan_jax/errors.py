"""The errors a user can cause, each with a message that says what to do.

This module imports nothing of the project, so every layer can raise them and
every command can turn them into one line on stderr and an exit code
(`gan_jax.cli`). They are ValueErrors, as they were before they lived here.
"""


class UserError(ValueError):
  """Something the user can fix; the message names the fix."""


class ConfigError(UserError):
  """A config option, or a combination of them, that cannot train."""


class DataError(UserError):
  """Bad input data: the message says what is wrong and what to do."""


class CheckpointError(UserError):
  """A checkpoint cannot be used; the message says why and what to do."""


class ExploreError(UserError):
  """A bad flag value or input of an exploration command (generate, interpolate, ...)."""


class NonFiniteLossError(UserError):
  """Training produced NaN or infinite losses."""


class DistributedError(UserError):
  """Multi-process settings that cannot work; the message says what to set."""


class WeightsError(UserError):
  """The FID Inception weights are missing or could not be fetched: the message says what to do."""


class WorkdirBusyError(UserError):
  """Another training run holds the --workdir (WORKDIR/run.lock): the message names it."""
