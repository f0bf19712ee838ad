"""Package list for setuptools.

The distribution maps two top-level folders into the ``lenghu`` namespace
(``pipelines/`` -> ``lenghu.pipelines``, ``viewer/`` -> ``lenghu.viewer``),
which ``[tool.setuptools.packages.find]`` cannot express; everything else is
in pyproject.toml.
"""
from setuptools import find_packages, setup

MAPPED = ("pipelines", "viewer")

packages = find_packages(include=["lenghu", "lenghu.*"])
packages += ["lenghu." + name for name in find_packages(include=[f"{m}*" for m in MAPPED])]

setup(packages=packages)
