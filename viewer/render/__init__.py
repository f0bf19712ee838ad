"""VisPy visuals that draw the viewer model (the only package of lenghu that imports ``vispy.scene``).

:class:`SceneRenderer` owns a SceneCanvas and one adapter per layer
(:data:`ADAPTERS`): :class:`ParticleVisual` (16-byte points, additive float
accumulation, tone mapping), :class:`VolumeVisual`, :class:`ImageVisual`,
:class:`TiledImageVisual` (image pyramids), and the :class:`Overlays`. Select a
VisPy backend before importing this (:func:`lenghu.viewer.app.headless.use_headless_gl` does it for off-screen work).
"""

from lenghu.viewer.render.image import ImageVisual
from lenghu.viewer.render.overlays import Overlays
from lenghu.viewer.render.points import POINT_DTYPE, ParticleVisual, ToneMapVisual
from lenghu.viewer.render.renderer import ADAPTERS, Frame, SceneRenderer
from lenghu.viewer.render.tiles import TiledImageVisual
from lenghu.viewer.render.volume import VolumeVisual

__all__ = ["ADAPTERS", "Frame", "SceneRenderer", "ParticleVisual", "ToneMapVisual", "VolumeVisual", "ImageVisual",
           "TiledImageVisual", "Overlays", "POINT_DTYPE"]
