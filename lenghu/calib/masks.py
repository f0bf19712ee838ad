"""Bits of the integer MASK plane of calibrated products.

Names and values follow the LSST convention of recording each bit in the
header as ``MP_<NAME> = <bit number>`` so any reader can decode the plane.
"""

from __future__ import annotations

import enum

import numpy as np

MASK_DTYPE = np.int32


class MaskBit(enum.IntFlag):
    """One flag per reason a pixel is not to be trusted."""

    BAD = 1 << 0        # bad column or pixel from the masters (dead, hot column)
    SAT = 1 << 1        # at or above the amplifier's saturation in the raw frame
    CR = 1 << 2         # cosmic ray (astroscrappy)
    NO_DATA = 1 << 3    # not finite in the raw data, or outside any amplifier
    HOT = 1 << 4        # hot pixel found in the master dark
    LOW_FLAT = 1 << 5   # master flat below its trust threshold (vignetted, dust)
    BLEED = 1 << 6      # next to saturation along a column (bleed trail)

    @classmethod
    def header_cards(cls) -> list[tuple[str, int, str]]:
        """``(keyword, bit number, comment)`` for each bit, for FITS headers."""
        return [
            (f"MP_{bit.name}"[:8], int(bit).bit_length() - 1, f"mask bit for {bit.name}")
            for bit in cls
        ]


def flag(mask: np.ndarray, where: np.ndarray, bit: MaskBit) -> np.ndarray:
    """``mask`` with ``bit`` set where ``where`` is true (returns a new array)."""
    return np.where(where, mask | MASK_DTYPE(bit), mask).astype(MASK_DTYPE, copy=False)
