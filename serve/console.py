"""The web console: a small single-page front end served by the API itself.

:func:`mount_console` adds to a :func:`serve.api.create_app` app

- ``/console/``: the static files of ``serve/console_files/`` (``index.html``, ``app.js``,
  ``app.css``; vanilla JavaScript, no build step, nothing loaded from elsewhere: a
  Content-Security-Policy of ``'self'`` says so to the browser);
- ``/console/palette.json``: the clothing-colour names the search accepts with their
  reference RGB, for the colour pickers;
- redirects from ``/`` and ``/console`` to ``/console/``.

None of these need a key: they hold no data. Every data call the console makes goes to
the API with the key the user typed at login (kept in the tab's ``sessionStorage``, sent
as ``Authorization: Bearer``), so the API's roles and audit apply unchanged.

The console finds the key's role with ``GET /whoami`` and draws its site maps from
``GET /site``. See ``docs/console.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["CONSOLE_DIR", "CONSOLE_HEADERS", "mount_console", "palette"]

CONSOLE_DIR = Path(__file__).with_name("console_files")
"""The console's static files (package data: ``serve/console_files/*``)."""

CONSOLE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' blob: data:; connect-src 'self'; font-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
"""Headers of every console file: nothing but this origin may load or be called (the
console works offline on a closed network), no framing, and a revalidation per load
so an upgrade is seen at once."""


class _ConsoleFiles(StaticFiles):
    """Static files with :data:`CONSOLE_HEADERS`."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(CONSOLE_HEADERS)
        return response


def palette() -> list[dict[str, Any]]:
    """The clothing colours a search accepts (:data:`COLOUR_NAMES`, in order), each with
    its reference RGB as ``#rrggbb`` for the swatches."""
    from sightline.sim.palette import CLOTHING_COLOURS
    from sightline.tracking.attributes import COLOUR_NAMES

    out = []
    for name in COLOUR_NAMES:
        r, g, b = CLOTHING_COLOURS[name]
        out.append({"name": name, "rgb": f"#{r:02x}{g:02x}{b:02x}"})
    return out


def mount_console(app: FastAPI, *, directory: str | Path = CONSOLE_DIR) -> FastAPI:
    """Serve the console on ``app`` at ``/console/`` (see the module docstring); returns
    ``app``. Call it after the API's routes are added (the ``/`` redirect is only added
    when ``/`` is free)."""
    colours = palette()

    @app.get("/console/palette.json", include_in_schema=False)
    def console_palette() -> JSONResponse:
        return JSONResponse({"colours": colours}, headers=CONSOLE_HEADERS)

    @app.get("/console", include_in_schema=False)
    def console_slash() -> RedirectResponse:
        # relative, so the console also works when the API sits under a path prefix
        return RedirectResponse("console/", status_code=307)

    taken = {getattr(route, "path", None) for route in app.router.routes}
    if "/" not in taken:

        @app.get("/", include_in_schema=False)
        def root() -> RedirectResponse:
            return RedirectResponse("console/", status_code=307)

    app.mount("/console", _ConsoleFiles(directory=directory, html=True), name="console")
    return app
