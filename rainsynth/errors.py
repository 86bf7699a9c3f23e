"""Errors that carry what went wrong, the value, and what is allowed."""

from __future__ import annotations


class RainsynthError(ValueError):
    """Base of every error rainsynth raises on bad input; the CLI turns it into a clean exit 2."""


class ParamError(RainsynthError):
    """A rain parameter or preset entry is unknown or outside its documented range."""


class SourceError(RainsynthError):
    """A source (root folder, list file, video, frame) is missing, unreadable or malformed."""


class MissingExtraError(RainsynthError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` to run."""
