"""Line mutations shared by the fuzzers of text configuration files (instrument and show TOML)."""

from __future__ import annotations

from hypothesis import strategies as st

ACTIONS = ("delete", "duplicate", "value", "garble", "truncate", "swap")


def mutate_lines(draw, lines: list[str], values: st.SearchStrategy[str], max_edits: int = 4) -> str:
    """``lines`` with 1 to ``max_edits`` edits: lines deleted, duplicated, swapped, garbled or cut off, or
    the value of a ``key = value`` line replaced by one drawn from ``values``; returned as text."""
    lines = list(lines)
    for _ in range(draw(st.integers(1, max_edits))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(ACTIONS))
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "value" and "=" in lines[i] and not lines[i].lstrip().startswith("#"):
            lines[i] = lines[i].split("=", 1)[0] + "= " + draw(values)
        elif action == "garble":
            lines[i] = draw(st.text(max_size=40))
        elif action == "truncate":
            lines = lines[:i]
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines) + "\n"
