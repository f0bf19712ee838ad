"""Adaptive quality: adjust the point budget to hold a target frame rate, with hysteresis (no GL).

The controller keeps an exponential moving average of the frame time and
changes the budget only when the average frame rate has been outside a
dead band around the target for ``patience`` frames in a row:

- below ``target * (1 - low_band)``: the budget is scaled by
  ``(fps / target) ** gain`` (at least ``max_step_down``), since the frame
  time of the point pass grows about linearly with the points drawn;
- above ``target * (1 + high_band)``: it grows by the same rule, at most
  ``max_step_up`` a step (slow up, fast down: a visitor notices stutter
  more than a few missing points).

Inside the band nothing changes, so the budget does not oscillate from
frame to frame. After a change the average is reset and ``patience``
frames are awaited again (the new budget's frames must be measured first).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BudgetController:
    """Point budget for a target frame rate.

    Parameters
    ----------
    target_fps : float, frames/s
    min_budget, max_budget, budget : int, points
    low_band, high_band : float
        Dead band around the target, as fractions of it.
    patience : int, frames
        Frames in a row outside the band before the budget changes.
    smoothing : float
        Weight of a new frame in the moving average of the frame time.
    """

    target_fps: float
    min_budget: int
    max_budget: int
    budget: int
    low_band: float = 0.10
    high_band: float = 0.15
    patience: int = 6
    smoothing: float = 0.3
    gain: float = 1.0
    max_step_down: float = 0.5
    max_step_up: float = 1.3
    changes: int = field(default=0, init=False)
    _avg: float | None = field(default=None, init=False)
    _out: int = field(default=0, init=False)

    def __post_init__(self):
        if not self.target_fps > 0:
            raise ValueError(f"target_fps must be > 0, got {self.target_fps!r}")
        if not 1 <= self.min_budget <= self.max_budget:
            raise ValueError(f"need 1 <= min_budget <= max_budget, got {self.min_budget}, {self.max_budget}")
        self.budget = int(min(max(self.budget, self.min_budget), self.max_budget))

    @property
    def fps(self) -> float | None:
        """The averaged frame rate (None before the first frame)."""
        return None if not self._avg else 1.0 / self._avg

    def update(self, frame_seconds: float) -> int:
        """Record one frame's duration (seconds); returns the budget for the next frame."""
        if not frame_seconds > 0:
            return self.budget
        a = self.smoothing
        self._avg = frame_seconds if self._avg is None else (1 - a) * self._avg + a * frame_seconds
        fps = 1.0 / self._avg
        low, high = self.target_fps * (1 - self.low_band), self.target_fps * (1 + self.high_band)
        if low <= fps <= high:
            self._out = 0
            return self.budget
        self._out += 1
        if self._out < self.patience:
            return self.budget
        ratio = (fps / self.target_fps) ** self.gain
        ratio = max(self.max_step_down, min(self.max_step_up, ratio))
        new = int(min(max(round(self.budget * ratio), self.min_budget), self.max_budget))
        if new != self.budget:
            self.budget = new
            self.changes += 1
        self._out = 0
        self._avg = None
        return self.budget
