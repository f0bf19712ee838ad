"""Shared pieces of the kiosk tests: a small show folder on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

REPO = Path(__file__).resolve().parents[3]
SNAPSHOT = REPO / "sample_data" / "cosmic_web" / "snapshot_002.hdf5"


def write_image(path: Path, seed: int = 0, n: int = 64) -> Path:
    """A small FITS image of a few Gaussian 'stars' on noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n]
    img = rng.normal(0, 1, (n, n))
    for _ in range(6):
        cx, cy = rng.uniform(8, n - 8, 2)
        img += 50 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 4.0)
    fits.PrimaryHDU(img.astype(np.float32)).writeto(path, overwrite=True)
    return path


SHOW = """\
[show]
title = {{ zh = "测试展览", en = "Test show" }}
language = "zh"
idle_seconds = {idle}
admin_chord = "ctrl+alt+shift+k"
allow_outside = {outside}
size = [320, 180]

[quality]
target_fps = 10
min_budget = 5000
max_budget = 200000
start_budget = 50000
{scenes}"""

WEB = """
[[scene]]
name = "web"
data = "{snapshot}"
duration = {duration}
tour = "auto"
structures = 3
caption = {{ zh = "宇宙网", en = "The cosmic web" }}
"""

IMAGE = """
[[scene]]
name = "{name}"
data = "{file}"
duration = {duration}
tour = "still"
caption = {{ zh = "{zh}", en = "{en}" }}
"""


def make_show(folder: Path, idle: float = 5.0, web: bool = True, images: int = 1, durations=None,
              extra_show: str = "") -> Path:
    """A show file in ``folder``: optionally the sample cosmic web, then ``images`` small FITS scenes."""
    durations = list(durations or [30.0] * (int(web) + images))
    scenes = ""
    k = 0
    if web:
        scenes += WEB.format(snapshot=SNAPSHOT.as_posix(), duration=durations[k])
        k += 1
    for i in range(images):
        f = write_image(folder / f"image{i}.fits", seed=i)
        scenes += IMAGE.format(name=f"image{i}", file=f.name, duration=durations[k], zh=f"图像{i}", en=f"Image {i}")
        k += 1
    text = SHOW.format(idle=idle, outside="true" if web else "false", scenes=scenes)
    if extra_show:
        text = text.replace("size = [320, 180]\n", "size = [320, 180]\n" + extra_show + "\n")
    path = folder / "show.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def show_folder(tmp_path) -> Path:
    return tmp_path
