"""Frontends over the viewer model and renderer: headless pictures and movies, and a desktop window.

- :mod:`.headless`: EGL / OSMesa selection (before VisPy is imported);
- :mod:`.scenes`: a Scene from files (no GL);
- :mod:`.render`: ``lenghu render`` (PNG, MP4);
- :mod:`.window`: ``lenghu view`` (VisPy canvas, Qt panel when PySide6 is installed).

Submodules are imported on demand (importing this package imports no GL).
"""
