"""IRAF/NOAO section strings (``[x1:x2,y1:y2]``, 1-based, inclusive).

A :class:`Section` stores the region 0-based and half-open, in numpy order,
and remembers whether either axis was written reversed (as some cameras do in
DETSEC to say that an amplifier reads out towards the other side).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lenghu.errors import LenghuError

_SECTION = re.compile(r"^\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")


class SectionSyntaxError(LenghuError, ValueError):
    """A section string does not have the form ``[x1:x2,y1:y2]``.

    A LenghuError (callers that know the file wrap it in :class:`~lenghu.errors.SectionError`),
    and still a ValueError for callers that catch that.
    """


@dataclass(frozen=True)
class Section:
    """A rectangular pixel region, 0-based, half-open, numpy (y, x) order.

    Attributes
    ----------
    y0, y1, x0, x1 : int
        Row and column limits; ``data[y0:y1, x0:x1]`` is the region.
    flip_x, flip_y : bool
        True where the FITS string ran from high to low along that axis.
    """

    y0: int
    y1: int
    x0: int
    x1: int
    flip_x: bool = False
    flip_y: bool = False

    def __post_init__(self):
        if self.y0 < 0 or self.x0 < 0 or self.y1 <= self.y0 or self.x1 <= self.x0:
            raise SectionSyntaxError(f"empty or negative section {self!r}")

    @classmethod
    def from_fits(cls, text: str) -> "Section":
        """Parse ``[x1:x2,y1:y2]`` (1-based, inclusive, either order)."""
        if not isinstance(text, str):
            raise SectionSyntaxError(f"section must be a string, got {text!r}")
        match = _SECTION.match(text)
        if match is None:
            raise SectionSyntaxError(f"not a section of the form [x1:x2,y1:y2]: {text!r}")
        xa, xb, ya, yb = (int(g) for g in match.groups())
        if min(xa, xb, ya, yb) < 1:
            raise SectionSyntaxError(f"section indices start at 1: {text!r}")
        return cls(
            y0=min(ya, yb) - 1,
            y1=max(ya, yb),
            x0=min(xa, xb) - 1,
            x1=max(xa, xb),
            flip_x=xb < xa,
            flip_y=yb < ya,
        )

    def to_fits(self) -> str:
        """The 1-based inclusive string, reversed where flipped."""
        xs = (self.x1, self.x0 + 1) if self.flip_x else (self.x0 + 1, self.x1)
        ys = (self.y1, self.y0 + 1) if self.flip_y else (self.y0 + 1, self.y1)
        return f"[{xs[0]}:{xs[1]},{ys[0]}:{ys[1]}]"

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(slice(y0, y1), slice(x0, x1))`` for indexing a 2-D array."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return self.y1 - self.y0, self.x1 - self.x0

    def fits_inside(self, shape: tuple[int, int]) -> bool:
        """True if the section lies within an array of this ``(ny, nx)`` shape."""
        return self.y1 <= shape[0] and self.x1 <= shape[1]

    def shifted(self, dy: int, dx: int) -> "Section":
        """The same region moved by ``(dy, dx)`` pixels."""
        return Section(self.y0 + dy, self.y1 + dy, self.x0 + dx, self.x1 + dx, self.flip_x, self.flip_y)
