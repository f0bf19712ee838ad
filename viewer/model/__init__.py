"""The viewer's model: scenes, layers, cameras, tours and time series as plain Python.

Nothing here imports a GL library (a test checks it): the model runs and is
tested with no display and no OpenGL. :mod:`lenghu.viewer.render` draws it.

>>> from lenghu.viewer.model import Scene, ParticleLayer, ParticleData
>>> import numpy as np
>>> scene = Scene([ParticleLayer(ParticleData(np.random.rand(100, 3)))])
>>> scene.camera.kind
'turntable'
"""

from lenghu.viewer.model.cameras import (
    Camera,
    FlyCamera,
    PanZoomCamera,
    TurntableCamera,
    camera_from_dict,
    camera_from_json,
    pixel_ray,
    plane_point,
    project,
)
from lenghu.viewer.model.colors import colormap_lut, interval, stretch
from lenghu.viewer.model.events import Emitter, Event, Evented, Prop
from lenghu.viewer.model.layers import ImageLayer, Layer, ParticleLayer, TiledImageLayer, VolumeLayer, fits_kind
from lenghu.viewer.model.particles import ParticleData, TimeSeries, field_range, load_particles
from lenghu.viewer.model.scene import Scene
from lenghu.viewer.model.tour import Keyframe, Tour, TourState, hermite

__all__ = [
    "Camera", "FlyCamera", "PanZoomCamera", "TurntableCamera", "camera_from_dict", "camera_from_json", "pixel_ray",
    "plane_point", "project",
    "colormap_lut", "interval", "stretch", "Emitter", "Event", "Evented", "Prop",
    "ImageLayer", "Layer", "ParticleLayer", "TiledImageLayer", "VolumeLayer", "fits_kind",
    "ParticleData", "TimeSeries", "field_range", "load_particles", "Scene",
    "Keyframe", "Tour", "TourState", "hermite",
]
