"""The one small exception hierarchy of ivfuse.

Every error a user can cause (a bad file, a missing weight file, a bad option) is an
:class:`IvfuseError`; the CLI prints its message on one line and exits with its ``exit_code``.
"""

from __future__ import annotations


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to a misspelt ``word``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class IvfuseError(Exception):
    """Base class of all errors ivfuse raises on purpose."""

    exit_code = 1


class InputError(IvfuseError, ValueError):
    """An input image or folder is missing, unreadable, empty or inconsistent."""

    exit_code = 2


class WeightsError(IvfuseError):
    """Trained weights are missing, corrupt, or belong to another method."""

    exit_code = 3


class MethodError(IvfuseError, KeyError):
    """An unknown method name, or a method used in a way it does not support."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else ""


class TrainingError(IvfuseError):
    """A training run cannot start or continue (bad data folder, output, checkpoint)."""

    exit_code = 2


class BackendError(IvfuseError):
    """An unknown or uninstalled inference backend, or a precision it cannot run."""

    exit_code = 2
