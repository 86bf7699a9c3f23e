"""Errors that carry what went wrong, the value, and what is allowed.

The command line turns them into one line, ``Error: ...``, and an exit code: 2 for bad usage or
a bad input value (:class:`RainsynthError`), 1 for a failure while running
(:class:`RunError`: a non-finite gradient, a checkpoint whose contents are unusable, an I/O
failure).
"""

from __future__ import annotations


class RainsynthError(ValueError):
    """Base of every error rainsynth raises on bad input; the CLI exits with ``exit_code`` (2)."""

    exit_code = 2


class RunError(RainsynthError):
    """A failure while running, not a bad input value: the CLI exits with code 1."""

    exit_code = 1


class ParamError(RainsynthError):
    """A rain parameter or preset entry is unknown or outside its documented range."""


class SourceError(RainsynthError):
    """A source (root folder, list file, video, frame) is missing, unreadable or malformed."""


class MissingExtraError(RainsynthError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` to run."""
