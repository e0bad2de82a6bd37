"""Sightline: find people across many CCTV cameras.

The ``sightline`` package is the Ray-free core: site config, geometry, the synthetic
site simulator, and (as they land) models, tracking, fusion, search, density and the
store. Ray actors live in ``actors/`` and Ray Serve deployments in ``serve/``.
"""

__version__ = "0.1.0"
