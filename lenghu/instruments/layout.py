"""Regular amplifier grids: the geometry of a many-output CCD from a few numbers.

A CCD with ``rows x columns`` amplifiers, each reading ``amp_shape`` pixels
followed by ``overscan_columns`` serial overscan columns, is laid out in the
raw array amplifier by amplifier, row-major from the bottom left. This is how
the WFST instrument file describes its 16-output CCD290-99 without listing
144 amplifiers by hand.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Sequence

import astropy.units as u

from lenghu.instruments.model import Amplifier
from lenghu.instruments.sections import Section

AMP_NAMES = string.ascii_uppercase


@dataclass(frozen=True)
class AmplifierGrid:
    """A regular grid of amplifiers.

    Attributes
    ----------
    rows, columns : int
        Amplifiers along y and x.
    amp_shape : tuple of int
        ``(ny, nx)`` imaging pixels per amplifier.
    overscan_columns : int
        Serial overscan columns after each amplifier's data.
    """

    rows: int
    columns: int
    amp_shape: tuple[int, int]
    overscan_columns: int

    def __post_init__(self):
        if self.rows < 1 or self.columns < 1 or self.rows * self.columns > len(AMP_NAMES):
            raise ValueError(f"amplifier grid {self.rows}x{self.columns} is not supported")
        if min(self.amp_shape) < 1 or self.overscan_columns < 0:
            raise ValueError(f"bad amplifier shape {self.amp_shape} or overscan {self.overscan_columns}")

    @property
    def count(self) -> int:
        """Number of amplifiers."""
        return self.rows * self.columns

    @property
    def shape(self) -> tuple[int, int]:
        """Assembled detector ``(ny, nx)``."""
        return self.rows * self.amp_shape[0], self.columns * self.amp_shape[1]

    @property
    def raw_shape(self) -> tuple[int, int]:
        """Raw ``(ny, nx)`` including overscan."""
        return self.rows * self.amp_shape[0], self.columns * (self.amp_shape[1] + self.overscan_columns)

    def scaled(self, factor: float) -> "AmplifierGrid":
        """The same grid with each amplifier ``factor`` times as large (at least 4 pixels)."""
        ny = max(4, round(self.amp_shape[0] * factor))
        nx = max(4, round(self.amp_shape[1] * factor))
        overscan = max(8, round(self.overscan_columns * factor)) if self.overscan_columns else 0
        return AmplifierGrid(self.rows, self.columns, (ny, nx), overscan)

    def amplifiers(
        self,
        gain: Sequence[u.Quantity],
        read_noise: Sequence[u.Quantity],
        bias_level: Sequence[u.Quantity],
        saturation: Sequence[u.Quantity],
        assumed: frozenset[str] = frozenset(),
    ) -> tuple[Amplifier, ...]:
        """The amplifiers of this grid, with per-amplifier electrical values."""
        ny, nx = self.amp_shape
        amps = []
        for k in range(self.count):
            row, col = divmod(k, self.columns)
            raw_x0 = col * (nx + self.overscan_columns)
            data = Section(row * ny, (row + 1) * ny, raw_x0, raw_x0 + nx)
            overscan = (
                Section(row * ny, (row + 1) * ny, raw_x0 + nx, raw_x0 + nx + self.overscan_columns)
                if self.overscan_columns
                else None
            )
            amps.append(
                Amplifier(
                    name=AMP_NAMES[k],
                    data_section=data,
                    overscan_section=overscan,
                    detector_section=Section(row * ny, (row + 1) * ny, col * nx, (col + 1) * nx),
                    gain=gain[k],
                    read_noise=read_noise[k],
                    bias_level=bias_level[k],
                    saturation=saturation[k],
                    assumed=assumed,
                )
            )
        return tuple(amps)
