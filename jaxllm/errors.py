"""Errors a user can act on. The CLI prints them without a traceback and exits 2."""


class UserError(Exception):
    """A mistake in input the user controls (config, data, files, checkpoints)."""


class ConfigError(UserError):
    """A config key, type or value is wrong; the message names key, value and what is allowed."""
