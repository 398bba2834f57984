"""Errors a user can fix: the CLI prints them as one line and exits non-zero."""


class FakelabError(Exception):
    """Base class for errors caused by bad input rather than by a bug."""


class InputError(FakelabError):
    """An input file is missing, empty, corrupt or not what its name says."""


class CheckpointError(FakelabError):
    """A checkpoint cannot be loaded into the requested model."""


class ConfigError(FakelabError):
    """A model config is unknown or malformed."""


class NoFaceError(InputError):
    """No face was found where one is needed."""

    def __init__(self, where: str):
        super().__init__(f"no face found in {where}")
