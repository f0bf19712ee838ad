"""Small GL helpers shared by the visuals (gloo level, no scene graph)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from vispy import gloo
from vispy.app import Canvas
from vispy.gloo.context import get_current_canvas

#: Fallbacks when the GL limits cannot be queried.
DEFAULT_MAX_TEXTURE = 4096
DEFAULT_MAX_3D_TEXTURE = 256
GL_MAX_3D_TEXTURE_SIZE = 0x8073


def draw_range(program: gloo.Program, mode: str, first: int, count: int) -> None:
    """Draw ``count`` vertices of ``program``'s bound buffers from vertex ``first`` (glDrawArrays).

    ``gloo.Program.draw`` always starts at vertex 0; level-of-detail nodes
    draw octant blocks of one buffer, so this sends the same GLIR command
    with a start.
    """
    canvas = get_current_canvas()
    canvas.context.glir.associate(program.glir)
    canvas.context.glir.command("DRAW", program.id, mode, (int(first), int(count)), 1)
    canvas.context.flush_commands()


def gl_limits() -> dict[str, int]:
    """GL_MAX_TEXTURE_SIZE and GL_MAX_3D_TEXTURE_SIZE of the current context."""
    from vispy.gloo import gl

    out = {"max_texture": DEFAULT_MAX_TEXTURE, "max_3d_texture": DEFAULT_MAX_3D_TEXTURE}
    try:
        out["max_texture"] = int(gl.glGetParameter(gl.GL_MAX_TEXTURE_SIZE))
        out["max_3d_texture"] = int(gl.glGetParameter(GL_MAX_3D_TEXTURE_SIZE))
    except Exception:  # no current context or a backend without glGetParameter for this enum
        pass
    return out


@lru_cache(maxsize=256)
def kernel_norm(size: int, sharpness: float = 4.0) -> float:
    """1 / (sum of the splat kernel over the pixels a point of ``size`` covers), averaged over sub-pixel positions.

    The kernel is exp(-sharpness r^2) with r = 1 at the splat's edge, cut at
    r = 1; GL covers the pixels whose centres lie inside the point's square.
    Multiplying a splat by this makes its total contribution 1 whatever its
    size, so levels of detail drawn with larger splats keep their brightness.
    """
    rng = np.random.default_rng(size)
    total = 0.0
    trials = 64
    for dx, dy in rng.random((trials, 2)):
        half = size / 2.0
        xs = np.arange(np.floor(dx - half) - 1, np.ceil(dx + half) + 2) + 0.5
        ys = np.arange(np.floor(dy - half) - 1, np.ceil(dy + half) + 2) + 0.5
        px = (xs - (dx - half)) / size
        py = (ys - (dy - half)) / size
        inside_x = (px >= 0) & (px < 1)
        inside_y = (py >= 0) & (py < 1)
        gx, gy = np.meshgrid(px[inside_x] - 0.5, py[inside_y] - 0.5)
        r2 = 4.0 * (gx * gx + gy * gy)
        total += float(np.sum(np.where(r2 <= 1.0, np.exp(-sharpness * r2), 0.0)))
    mean = total / trials
    return 1.0 / mean if mean > 0 else 1.0


def float_target(shape_hw: tuple[int, int]) -> tuple[gloo.FrameBuffer, gloo.Texture2D]:
    """A framebuffer with one RGBA float32 colour texture of (height, width)."""
    h, w = shape_hw
    tex = gloo.Texture2D(shape=(h, w, 4), format="rgba", internalformat="rgba32f", interpolation="nearest")
    return gloo.FrameBuffer(color=tex), tex


def read_float(viewport: tuple[int, int, int, int]) -> np.ndarray:
    """RGBA float32 pixels of the bound framebuffer (row 0 at the top)."""
    return gloo.read_pixels(viewport, alpha=True, out_type="float")


__all__ = ["draw_range", "gl_limits", "kernel_norm", "float_target", "read_float", "Canvas"]
