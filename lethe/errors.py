"""Errors that the CLI turns into one clear line (no traceback)."""


class LetheError(Exception):
    """A user-facing failure: bad input, missing file, invalid configuration.

    The message must say what is wrong and, where possible, how to fix it.
    """


class ConfigError(LetheError):
    """params.yaml is missing, unparsable, or does not match the schema."""


class ModelNotFoundError(LetheError):
    """A model path does not exist or does not hold a loadable model."""


class NothingMemorizedError(LetheError):
    """The target model recalls nothing about the anchor: nothing to unlearn."""
