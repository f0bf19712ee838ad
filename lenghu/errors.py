"""Typed errors raised by lenghu.

Every error that concerns a file names that file, so that a pipeline can record
the reason next to the frame and go on with the others.
"""

from __future__ import annotations

from pathlib import Path


class LenghuError(Exception):
    """Base class of every error lenghu raises on purpose."""


class ConfigError(LenghuError):
    """A configuration or instrument file is invalid."""

    def __init__(self, source: str | Path, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class UnknownInstrumentError(ConfigError):
    """No shipped instrument has this name and no such TOML file exists."""


class FrameError(LenghuError):
    """A raw or calibrated file cannot be used; names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class UnreadableFileError(FrameError):
    """The file is empty, not FITS, or its header cannot be parsed."""


class TruncatedFileError(FrameError):
    """The file ends before the data its header announces."""


class MissingKeywordError(FrameError):
    """A header keyword that the instrument's rules need is absent."""


class SectionError(FrameError):
    """A section string is malformed or lies outside the image."""


class ShapeError(FrameError):
    """The data have a shape the instrument does not expect."""


class UnclassifiedFrameError(FrameError):
    """No frame-type rule of the instrument matches this header."""


class MissingExtensionError(FrameError):
    """An HDU (extension) that the instrument or the caller asks for is not in the file."""
