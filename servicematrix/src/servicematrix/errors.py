"""Errors a user can hit: each message is one line saying what went wrong and what to do."""


class ServiceMatrixError(Exception):
    """Base class; the plugin turns these into one-line pytest usage errors."""


class ConfigError(ServiceMatrixError):
    """An option has a value we cannot use."""


class UnavailableError(ServiceMatrixError):
    """No backend can serve what was asked for."""


class StartupError(ServiceMatrixError):
    """A server was found but did not come up."""


class ControlError(ServiceMatrixError):
    """A server could not be stopped, started, paused or resumed as a test asked."""
