"""Particles: additive splats into a float framebuffer, then tone mapping onto the picture.

Pass 1 (before the scene graph draws): every point is a Gaussian splat
added into an RGBA float32 texture: rgb += colour * w * k, a += w * k, where
w is the number of particles the point stands for (1 at full detail, more
in a coarse level-of-detail node) and k the splat kernel normalised to sum
to 1 (so a larger splat spreads the same light). The GPU holds 16 bytes a
point: position float32 x 3 and one float32 field value (coloured in the
shader through a colormap texture, linear or log).

Pass 2 (:class:`ToneMapVisual`, a node of the scene): a full-screen quad
reads the texture; the pixel's colour is the density-weighted mean colour
rgb / a, its brightness a tone curve of the density a:

- ``asinh`` (default, Lupton et al. 1999): ``asinh(e a / a_m) / asinh(a_w / a_m)``
  with a_m the median density of the lit pixels of the first frame and
  a_w its 99.98th percentile: linear in the faint parts, logarithmic in the
  dense ones, so a dense core keeps its structure and only its densest
  0.02% reaches white;
- ``exp``: ``1 - exp(-k a)`` with k putting the 99.7th percentile at 95%;
- ``linear``: clipped at the same point.

e is the exposure; ``white_point`` replaces a_w (a_w, a_m are kept from the
first frame so a movie does not flicker).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
from vispy import gloo
from vispy.scene.visuals import create_visual_node
from vispy.visuals import Visual

from lenghu.viewer.model.colors import colormap_lut
from lenghu.viewer.render.glutil import draw_range, float_target, kernel_norm, read_float

SHARPNESS = 4.0
#: Brightness the white point gets (0.95: dense cores stay below full white).
WHITE_LEVEL = 0.95
WHITE_PERCENTILE = 99.7
#: asinh: the density drawn at full brightness (the densest 0.02% of the lit pixels reach white)
ASINH_WHITE_PERCENTILE = 99.98
MAX_SPLAT = 64
#: Sampled splats grow at most to this many times their on-screen spacing.
SPACING_FACTOR = 4.0
POINT_DTYPE = np.dtype([("a_position", np.float32, 3), ("a_value", np.float32)])
assert POINT_DTYPE.itemsize == 16

ACCUM_VERT = """
uniform mat4 u_mvp;
uniform float u_size;
uniform vec2 u_clim;
uniform float u_log;
attribute vec3 a_position;
attribute float a_value;
varying float v_t;
void main() {
    gl_Position = u_mvp * vec4(a_position, 1.0);
    float v = a_value;
    if (u_log > 0.5) v = log(max(v, 1e-30)) * 0.4342944819;
    v_t = clamp((v - u_clim.x) / (u_clim.y - u_clim.x), 0.0, 1.0);
    gl_PointSize = u_size;
}
"""

ACCUM_FRAG = """
uniform sampler2D u_cmap;
uniform float u_amount;
uniform float u_use_cmap;
uniform vec3 u_color;
uniform float u_sharpness;
varying float v_t;
void main() {
    vec2 d = gl_PointCoord - vec2(0.5);
    float r2 = 4.0 * dot(d, d);
    if (r2 > 1.0) discard;
    float a = u_amount * exp(-u_sharpness * r2);
    vec3 c = u_use_cmap > 0.5 ? texture2D(u_cmap, vec2(v_t, 0.5)).rgb : u_color;
    gl_FragColor = vec4(c * a, a);
}
"""

TONE_VERT = """
attribute vec2 a_pos;
varying vec2 v_uv;
void main() {
    v_uv = a_pos * 0.5 + 0.5;
    gl_Position = vec4(a_pos, 0.0, 1.0);
}
"""

TONE_FRAG = """
uniform sampler2D u_accum;
uniform float u_k;
uniform float u_kw;
uniform float u_mode;
uniform float u_opacity;
varying vec2 v_uv;
float asinh_(float x) { return log(x + sqrt(x * x + 1.0)); }
void main() {
    vec4 acc = texture2D(u_accum, v_uv);
    float x = acc.a;
    if (x <= 0.0) discard;
    vec3 colour = acc.rgb / x;
    float b;
    if (u_mode < 0.5) b = 1.0 - exp(-u_k * x);
    else if (u_mode < 1.5) b = asinh_(u_k * x) / asinh_(u_kw);
    else b = u_k * x;
    b = clamp(b, 0.0, 1.0) * u_opacity;
    gl_FragColor = vec4(colour * b, b);
}
"""


class ToneMapVisual(Visual):
    """Full-screen quad that tone maps an accumulation texture onto the picture (premultiplied alpha)."""

    def __init__(self):
        super().__init__(vcode=TONE_VERT, fcode=TONE_FRAG)
        quad = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], dtype=np.float32)
        self.shared_program["a_pos"] = gloo.VertexBuffer(quad)
        self._draw_mode = "triangle_strip"
        self.texture = None
        self.set_gl_state(blend=True, blend_func=("one", "one_minus_src_alpha"), depth_test=False, cull_face=False)
        self.set_params(1.0, 1.0, 0, 1.0)

    def set_params(self, k: float, kw: float, mode: int, opacity: float) -> None:
        p = self.shared_program
        p["u_k"], p["u_kw"], p["u_mode"], p["u_opacity"] = float(k), float(kw), float(mode), float(opacity)

    def set_texture(self, texture) -> None:
        self.texture = texture
        if texture is not None:
            self.shared_program["u_accum"] = texture

    def _prepare_transforms(self, view):
        pass

    def _prepare_draw(self, view):
        return self.texture is not None

    def _compute_bounds(self, axis, view):
        return None


ToneMap = create_visual_node(ToneMapVisual)

TONEMAP_MODES = {"exp": 0, "asinh": 1, "linear": 2}


class ParticleVisual:
    """Draws one :class:`~lenghu.viewer.model.ParticleLayer` (in memory, a time series, or an LOD store)."""

    def __init__(self, layer, renderer):
        self.layer = layer
        self.renderer = renderer
        self.program = gloo.Program(ACCUM_VERT, ACCUM_FRAG)
        self.program["u_sharpness"] = SHARPNESS
        self.node = ToneMap(parent=renderer.canvas.scene)
        self.fbo = self.texture = None
        self.auto_white: float | None = None
        #: (median, white) accumulated densities of the first frame (lit pixels)
        self.auto_levels: tuple[float, float] | None = None
        self._cmap_name = None
        self._gpu: OrderedDict = OrderedDict()
        self._gpu_points = 0
        self._dirty_data = True
        self.loader = None
        self.last_selection = None
        self.last_points = 0
        layer.events.changed.connect(self._on_change)
        if layer.kind == "lod":
            self._start_loader()

    # ------------------------------------------------------------------ events
    def _on_change(self, event) -> None:
        if event.name in ("field", "time", "source"):
            self._dirty_data = True
            self._drop_gpu()
            if event.name == "field" and self.loader is not None:
                self.loader.close()
                self._start_loader()
            if event.name in ("field", "source"):
                self.auto_levels = None
        if event.name in ("white_point", "tonemap"):
            self.auto_levels = None
        self.renderer.request_update()

    def _start_loader(self):
        from lenghu.viewer.lod import NodeLoader

        capacity = max(4 * self.layer.budget, 2_000_000)
        self.loader = NodeLoader(self.layer.source, self.layer.field, capacity,
                                 on_loaded=lambda node: self.renderer.request_update(from_thread=True))

    def close(self) -> None:
        self.layer.events.changed.disconnect(self._on_change)  # else the layer keeps this visual alive
        if self.loader is not None:
            self.loader.close()
        self._drop_gpu()
        self.node.parent = None

    def _drop_gpu(self):
        for vbo in self._gpu.values():
            vbo.delete()
        self._gpu.clear()
        self._gpu_points = 0

    # ------------------------------------------------------------------ data
    def _memory_buffer(self):
        """(vbo, n) for in-memory particles, uploaded in a random order so that a prefix is a uniform sample."""
        key = "all"
        if self._dirty_data or key not in self._gpu:
            data = self.layer.particles_now()
            n = len(data)
            if not hasattr(self, "_order") or len(self._order) != n:
                self._order = np.random.default_rng(0).permutation(n)
            arr = np.empty(n, dtype=POINT_DTYPE)
            arr["a_position"] = data.positions[self._order]
            field = self.layer.field
            arr["a_value"] = data.fields[field][self._order] if field is not None else 0.0
            if key in self._gpu:
                self._gpu[key].set_data(arr)
            else:
                self._gpu[key] = gloo.VertexBuffer(arr)
            self._n_memory = n
            self._dirty_data = False
        return self._gpu[key], self._n_memory

    def _node_buffer(self, node: int):
        vbo = self._gpu.get(node)
        if vbo is not None:
            self._gpu.move_to_end(node)
            return vbo
        data = self.loader.get(node)
        if data is None:
            return None
        arr = np.empty(len(data), dtype=POINT_DTYPE)
        arr["a_position"] = data[:, :3]
        arr["a_value"] = data[:, 3]
        vbo = gloo.VertexBuffer(arr)
        self._gpu[node] = vbo
        self._gpu_points += len(arr)
        return vbo

    def _trim_gpu(self, keep: set) -> None:
        limit = max(3 * self.layer.budget, 1_000_000)
        while self._gpu_points > limit and self._gpu:
            victim = next((k for k in self._gpu if k not in keep), None)
            if victim is None:
                break
            vbo = self._gpu.pop(victim)
            self._gpu_points -= vbo.size
            vbo.delete()

    # ------------------------------------------------------------------ pass 1
    def select(self, frame, wait: bool = False):
        """The LOD selection for this frame (waits for the loader first when ``wait``: headless complete frames)."""
        from lenghu.viewer.lod import select_nodes

        store = self.layer.source
        args = (store.tree, frame.view, frame.projection, frame.size, self.layer.budget, frame.eye,
                frame.focal_px, frame.perspective)
        if wait:
            ideal = select_nodes(*args)
            self.loader.request(ideal.wanted)
            self.loader.wait(timeout=120)
        sel = select_nodes(*args, loaded=self.loader.loaded_mask())
        self.loader.request(sel.wanted)
        return sel

    def accumulate(self, canvas, frame, wait: bool = False) -> None:
        """Pass 1: splat the points into this layer's float texture (size of the current viewport)."""
        layer = self.layer
        w, h = frame.size
        if self.texture is None or self.texture.shape[:2] != (h, w):
            if self.fbo is not None:
                self.fbo.delete()
            self.fbo, self.texture = float_target((h, w))
            self.node.set_texture(self.texture)
        if not layer.visible:
            self.node.visible = False
            return
        self.node.visible = True
        p = self.program
        p["u_mvp"] = (frame.projection @ frame.view).T.astype(np.float32)
        lo, hi = layer.color_range()
        log = layer.scale == "log"
        if log:
            lo, hi = math.log10(max(lo, 1e-30)), math.log10(max(hi, 1e-30))
        if not hi > lo:
            hi = lo + 1.0
        p["u_clim"] = (lo, hi)
        p["u_log"] = 1.0 if log else 0.0
        p["u_use_cmap"] = 1.0 if layer.field is not None else 0.0
        p["u_color"] = tuple(layer.color)
        if self._cmap_name != layer.colormap:
            lut = colormap_lut(layer.colormap, 256)[None, :, :]
            p["u_cmap"] = gloo.Texture2D(lut, interpolation="linear", wrapping="clamp_to_edge",
                                         internalformat="rgba32f")
            self._cmap_name = layer.colormap
        canvas.push_fbo(self.fbo, (0, 0), canvas.size)
        try:
            gloo.set_clear_color((0, 0, 0, 0))
            gloo.clear(color=True, depth=False)
            gloo.set_state(blend=True, blend_func=("one", "one"), blend_equation="func_add", depth_test=False,
                           cull_face=False)
            drawn = self._draw_points(frame, wait)
            self.last_points = drawn
            if self.auto_levels is None and drawn:
                acc = read_float((0, 0, w, h))[..., 3]
                nz = acc[acc > 0]
                if nz.size:
                    white = float(np.percentile(nz, ASINH_WHITE_PERCENTILE if layer.tonemap == "asinh"
                                                else WHITE_PERCENTILE))
                    self.auto_levels = (float(np.median(nz)), white)
                else:
                    self.auto_levels = (1.0, 1.0)
        finally:
            canvas.pop_fbo()
        soft, auto_white = self.auto_levels or (1.0, 1.0)
        white = layer.white_point or auto_white
        self.auto_white = auto_white
        mode = TONEMAP_MODES[layer.tonemap]
        if mode == 0:
            k = -math.log(1.0 - WHITE_LEVEL) / white * layer.exposure
            kw = k * white
        elif mode == 1:  # Lupton-style asinh: linear below the median density, logarithmic above
            k = layer.exposure / max(soft, 1e-30)
            kw = max(white / max(soft, 1e-30), 1.0 + 1e-6)
        else:
            k = WHITE_LEVEL / white * layer.exposure
            kw = 1.0
        self.node.set_params(k, kw, mode, layer.opacity)

    def _splat(self, weight: float, spacing: float = float("nan")) -> tuple[int, float]:
        """Splat diameter (px) and amount for points standing for ``weight`` particles each.

        A sampled point is drawn ``weight ** lod_size_exponent`` times larger (smoother, same light),
        but no larger than SPACING_FACTOR times the on-screen spacing of its block: where a block's
        points already cover the screen densely, larger splats only cost fill rate.
        """
        base = self.layer.point_size
        size = base * max(weight, 1.0) ** self.layer.lod_size_exponent
        if math.isfinite(spacing):
            size = min(size, max(base, SPACING_FACTOR * spacing))
        size = int(min(MAX_SPLAT, max(1, round(size))))
        return size, weight * kernel_norm(size, SHARPNESS)

    def _draw_points(self, frame, wait: bool) -> int:
        p = self.program
        layer = self.layer
        if layer.kind != "lod":
            vbo, n = self._memory_buffer()
            if n == 0:
                return 0
            m = min(n, layer.budget)
            p.bind(vbo)
            size, amount = self._splat(n / m)
            p["u_size"], p["u_amount"] = float(size), float(amount)
            draw_range(p, "points", 0, m)
            return m
        sel = self.select(frame, wait)
        self.last_selection = sel
        used = set()
        drawn = 0
        current = None
        for node, first, count, weight, spacing in zip(sel.node.tolist(), sel.first.tolist(), sel.count.tolist(),
                                                       sel.weight.tolist(), sel.spacing.tolist()):
            vbo = self._node_buffer(node)
            if vbo is None:  # evicted between the selection and now: skip it this frame
                continue
            used.add(node)
            if vbo is not current:
                p.bind(vbo)
                current = vbo
            size, amount = self._splat(weight, spacing)
            p["u_size"], p["u_amount"] = float(size), float(amount)
            draw_range(p, "points", first, count)
            drawn += count
        self._trim_gpu(used)
        return drawn
