"""The MASK plane of one image as its flagged pixels only.

A calibrated WFST CCD has 85 million MASK values of which a few thousand are
non-zero. Every step of the measurement asks the same questions of it (which
pixels have any of these bits? which bits occur at all?), and answering them
on the full plane costs a full-size temporary each time (``mask & bits`` is
340 MB of int32, ``!= 0`` another 85 MB), 0.1-0.7 s per question on this
machine, most of it in the pages the temporaries touch for the first time.
:class:`FlaggedPixels` finds the non-zero pixels once (one pass, no
temporary) and answers from them; a full-size boolean plane, which sep needs,
is made only when a question has a non-empty answer, from zeroed memory that
is written only where a pixel is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class FlaggedPixels:
    """The non-zero pixels of a MASK plane.

    Attributes
    ----------
    shape : tuple of int
        Shape of the plane, (ny, nx).
    index : ndarray of int64
        Flat (C-order) indices of the non-zero pixels, increasing.
    values : ndarray of int64
        Their MASK values.
    """

    shape: tuple[int, int]
    index: np.ndarray
    values: np.ndarray

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> "FlaggedPixels":
        """Find the non-zero pixels of an integer MASK plane (one pass, no full-size temporary)."""
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"MASK must be 2-D, got shape {mask.shape}")
        flat = mask.reshape(-1)
        index = np.flatnonzero(flat)
        return cls(shape=tuple(mask.shape), index=index, values=flat[index].astype(np.int64))

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> "FlaggedPixels":
        """No pixel flagged."""
        return cls(shape=tuple(shape), index=np.zeros(0, dtype=np.int64), values=np.zeros(0, dtype=np.int64))

    @property
    def present(self) -> int:
        """OR of every bit that occurs."""
        return int(np.bitwise_or.reduce(self.values)) if self.values.size else 0

    def with_bits(self, where: np.ndarray, bits: int) -> "FlaggedPixels":
        """A copy with ``bits`` set where the boolean plane ``where`` is true."""
        extra = np.flatnonzero(np.asarray(where).reshape(-1))
        index = np.union1d(self.index, extra)
        values = np.zeros(index.size, dtype=np.int64)
        values[np.searchsorted(index, self.index)] = self.values
        values[np.searchsorted(index, extra)] |= int(bits)
        return FlaggedPixels(shape=self.shape, index=index, values=values)

    def select(self, bits: int) -> np.ndarray:
        """Flat indices of the pixels with any of ``bits``."""
        return self.index[(self.values & int(bits)) != 0]

    def plane(self, bits: int) -> np.ndarray | None:
        """Full-size boolean plane of the pixels with any of ``bits``, or None when there are none."""
        hits = self.select(bits)
        if hits.size == 0:
            return None
        out = np.zeros(self.shape, dtype=bool)  # zeroed lazily by the kernel; written only at the hits
        out.reshape(-1)[hits] = True
        return out

    def dense(self, dtype=np.int32) -> np.ndarray:
        """The MASK plane itself."""
        out = np.zeros(self.shape, dtype=dtype)
        out.reshape(-1)[self.index] = self.values.astype(dtype)
        return out
