"""Ray actors over the ``sightline`` core.

Planned (issue 3 onwards): ``camera.py`` (CameraActor: decode -> detect -> track ->
embed) and ``coordinator.py`` (fusion, store, search, density). Nothing here yet.
"""
