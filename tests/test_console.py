"""The web console (``serve/console.py``, files in ``serve/console_files/``).

Fast tests drive the app with FastAPI's TestClient: the console's files are served
without a key, hold no key and load nothing from elsewhere, and the data routes still
need keys. The end-to-end tests run the real service (``start_service`` on the tiny
simulated site, on the session's local Ray) with the console mounted, and drive the
console in headless Chromium through Playwright: an analyst finds the true person
first with a photo, confirms it and sees the route; data and operator keys see a crowd
alert, density and operations; an analyst key is offered no operator page and the API
refuses it. Screenshots go to a pytest temporary folder (printed; set
``SIGHTLINE_CONSOLE_ARTIFACTS`` to choose one). The browser tests skip, saying why,
when Python Playwright or Debian's chromium is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from serve.api import create_app
from serve.console import CONSOLE_DIR, mount_console
from sightline.config import load_site_config
from sightline.security import KeyStore, security_paths
from sightline.tracking.attributes import COLOUR_NAMES

ROLES = ("analyst", "data", "operator", "admin")
CHROMIUM = os.environ.get("SIGHTLINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WINDOW = {"start": "2026-03-02T13:00:00", "end": "2026-03-02T15:00:00"}
"""The search window in the console's UTC datetime-local fields (the tiny site records
from 2026-03-02 14:00 UTC)."""


def _with_console(app):
    """``app`` with the console mounted, once (create_app may already mount it)."""
    if not any(getattr(r, "path", None) == "/console" for r in app.router.routes):
        mount_console(app)
    return app


# --------------------------------------------------------------------------- fast


@pytest.fixture(scope="module")
def console_client(tiny_site: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("console-app")
    site = load_site_config(tiny_site / "site.yaml")
    keys = KeyStore(root / "keys.json", create=True, iterations=1)
    tokens = {role: keys.create(f"{role}-user", role)[1] for role in ROLES}
    app = create_app(
        site, store_root=root / "store", keys_file=root / "keys.json", audit_dir=root / "audit"
    )
    with TestClient(_with_console(app)) as client:
        yield client, tokens


def test_console_files_are_served_without_a_key(console_client):
    client, _ = console_client
    page = client.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="app.js"' in page.text and 'href="app.css"' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    script = client.get("/console/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    style = client.get("/console/app.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    colours = client.get("/console/palette.json").json()["colours"]
    assert [c["name"] for c in colours] == list(COLOUR_NAMES)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c["rgb"]) for c in colours)


def test_root_and_bare_console_redirect_to_the_console(console_client):
    client, _ = console_client
    for path in ("/", "/console"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 307 and answer.headers["location"] == "console/"
    assert client.get("/").url.path == "/console/"
    assert client.get("/console/no-such-file.js").status_code == 404
    assert client.get("/console/%2e%2e/api.py").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/console")]


def test_console_holds_no_keys_and_loads_nothing_from_elsewhere(console_client):
    _, tokens = console_client
    files = sorted(p for p in CONSOLE_DIR.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"index.html", "app.js", "app.css"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"sl_[0-9A-Za-z]{6,}_[0-9A-Za-z_-]{10,}", text), path
        assert not any(token in text for token in tokens.values()), path
        urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path, urls)
    script = (CONSOLE_DIR / "app.js").read_text(encoding="utf-8")
    assert "sessionStorage" in script and "localStorage" not in script
    assert "Authorization: `Bearer ${key()}`" in script


def test_console_good_match_default_is_the_search_default():
    """The search form's threshold field starts at the server's open-set threshold."""
    from sightline.search.query import DEFAULT_MIN_CONFIDENCE

    script = (CONSOLE_DIR / "app.js").read_text(encoding="utf-8")
    field = re.search(r'field\("min-confidence".*?value: ([0-9.]+) \}', script)
    assert field is not None
    assert float(field.group(1)) == DEFAULT_MIN_CONFIDENCE


def test_data_routes_still_need_a_key_and_the_right_role(console_client):
    client, tokens = console_client
    for path in ("/whoami", "/site", "/density/alerts", "/cameras", "/watches", "/events"):
        assert client.get(path).status_code == 401, path
    assert client.post("/searches", json={}).status_code == 401
    analyst = {"Authorization": f"Bearer {tokens['analyst']}"}
    assert client.get("/cameras", headers=analyst).status_code == 403
    assert client.get("/density/alerts", headers=analyst).status_code == 403
    who = client.get("/whoami", headers=analyst).json()
    assert who["role"] == "analyst" and who["principal"] == "analyst-user"
    site = client.get("/site", headers=analyst).json()
    assert [c["id"] for c in site["cameras"]] == ["cam01", "cam02"]
    assert [z["id"] for z in site["zones"]] == ["plaza"] and len(site["bounds"]) == 4


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser_available():
    """Playwright's sync API, or a skip saying what is missing (checked before the
    service starts)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="Python Playwright is not installed (pip install playwright; never "
        "`playwright install`: the tests use Debian's chromium)",
    )
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium)")
    return sync_api


@pytest.fixture(scope="module")
def browser(browser_available, console_service):
    """Headless Chromium. Started after the service: Playwright's sync API runs an
    asyncio loop in this thread, in which Ray Serve's blocking calls refuse to run."""
    with browser_available.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("SIGHTLINE_CONSOLE_ARTIFACTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {folder}")
    return folder


def _console_api(site, app_prefix: str):
    """The API ingress as ``sightline serve`` deploys it, with the console mounted (the
    builder runs in each replica, so patching ``create_app`` here would not reach it)."""
    from ray import serve

    from serve.commands import API_MAX_ONGOING_REQUESTS, API_NUM_CPUS

    def build():
        from serve.api import create_app
        from serve.console import mount_console
        from serve.live import RayOperations, handle_models

        embed, detect, adapter = handle_models(app_prefix, site.models.embedder.type)
        app = create_app(
            site, embed=embed, detect=detect, adapter=adapter, ops=RayOperations(app_prefix)
        )
        if not any(getattr(r, "path", None) == "/console" for r in app.router.routes):
            mount_console(app)
        return app

    @serve.deployment(
        name="SightlineAPI",
        ray_actor_options={"num_cpus": API_NUM_CPUS},
        max_ongoing_requests=API_MAX_ONGOING_REQUESTS,
    )
    @serve.ingress(build)
    class ConsoleAPI:
        """The HTTP API with the console."""

    return ConsoleAPI


@pytest.fixture(scope="module")
def console_service(ray_local: str, tiny_site: Path, tmp_path_factory, browser_available):
    """The whole service on the tiny site with the console; the plaza's alert density is
    lowered so the few people crossing it raise a real crowd alert (the tiny site has no
    crowd event at the preset's threshold)."""
    import httpx
    from ray import serve

    from serve.commands import start_service, stop_service

    site = load_site_config(tiny_site / "site.yaml")
    serving = {"max_batch_size": 8, "batch_wait_timeout_s": 0.05, "num_gpus": 0.25, "num_cpus": 0}
    store = tmp_path_factory.mktemp("console-service") / "store"
    zones = [z.model_copy(update={"alert_density": 0.02, "alert_hold_s": 1.0}) for z in site.zones]
    site = site.model_copy(
        update={
            "models": site.models.model_validate(
                {"detector": {"serving": serving}, "embedder": {"serving": serving}}
            ),
            "storage": site.storage.model_copy(update={"root": str(store), "flush_after_s": 1.0}),
            "zones": zones,
        }
    )
    keys = KeyStore(security_paths(site)[0], create=True, iterations=1)
    tokens = {role: keys.create(f"{role}-user", role)[1] for role in ROLES}
    port = int(ray_local.rsplit(":", 1)[1])
    prefix = "console-test"
    handle = start_service(
        site, site_path=tiny_site / "site.yaml", port=port, app_prefix=prefix, log=lambda _: None
    )
    serve.run(_console_api(site, prefix).bind(), name=f"{prefix}-api", route_prefix="/")
    with httpx.Client(base_url=handle.url, timeout=60.0) as client:
        _wait_until_done(client, tokens)
        yield {"client": client, "tokens": tokens, "site": site, "url": handle.url}
    stop_service(handle)


def _auth(tokens, role):
    return {"Authorization": f"Bearer {tokens[role]}"}


def _wait_until_done(client, tokens, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    cams: list = []
    while time.monotonic() < deadline:
        answer = client.get("/cameras", headers=_auth(tokens, "operator"))
        cams = answer.json() if answer.status_code == 200 else []
        done = cams and all(c["health"]["state"] in ("finished", "failed") for c in cams)
        if done and client.get("/console/", timeout=10).status_code == 200:
            return
        time.sleep(1.0)
    raise AssertionError(f"cameras still running after {timeout_s} s: {cams}")


class _Page:
    """A browser page at a viewport, collecting console errors and page errors."""

    def __init__(self, browser, width: int, height: int, shots: Path, name: str) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.expected: list[int] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.shots, self.name, self.size = shots, name, f"{width}x{height}"

    def _console(self, message) -> None:
        if message.type not in ("error", "assert"):
            return
        # Chromium logs every HTTP error answer; one a test provokes on purpose is fine
        status = re.search(r"Failed to load resource: .* status of (\d{3})", message.text)
        if status and int(status.group(1)) in self.expected:
            self.expected.remove(int(status.group(1)))
            return
        self.errors.append(f"console.{message.type}: {message.text}")

    def expect_http_error(self, status: int) -> None:
        """The next answer with ``status`` is provoked by the test (not a console bug)."""
        self.expected.append(status)

    def shot(self, step: str) -> None:
        path = self.shots / f"{self.name}-{self.size}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)

    def login(self, url: str, token: str) -> None:
        """Log in with the keyboard only: the key field has focus, Enter submits."""
        self.page.goto(url + "/")
        assert self.page.url.endswith("/console/")
        self.page.wait_for_selector("#api-key:focus")
        self.page.keyboard.type(token)
        self.page.keyboard.press("Enter")
        self.page.wait_for_selector("#logout:not([hidden])")

    def nav(self) -> list[str]:
        return self.page.locator("#nav a").all_inner_texts()

    def close(self) -> None:
        self.context.close()
        assert not self.errors, self.errors


def _until(page, expression: str, timeout_s: float = 30.0) -> None:
    """Poll ``expression`` in the page until true (``wait_for_function`` evaluates a
    string with ``eval``, which the console's Content-Security-Policy forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        page.wait_for_timeout(200)


def _true_owner(tiny_site: Path, site, store: str) -> tuple[int, dict[str, int]]:
    """The person to search for (the first of gt/people.parquet, who crosses both
    cameras) and each candidate key's true person, by the rule of ``sightline eval
    search`` (the person covering most of an identity's frames)."""
    from sightline.evaluation.search import identity_people

    gt = pl.read_parquet(tiny_site / "gt" / "boxes.parquet")
    owners = identity_people(store, site, gt)
    owner = dict(zip(owners["key"], owners["person_id"], strict=True))
    person = int(pl.read_parquet(tiny_site / "gt" / "people.parquet")["person_id"][0])
    assert person in owner.values(), f"person {person} is in no stored identity: {owner}"
    return person, owner


NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def _search_form_refuses_a_bad_query(view: _Page, photo: Path) -> None:
    """Case id and reason are checked in the page (nothing is sent); the API's 422 for a
    window that ends before it starts is shown as the API words it."""
    page = view.page
    page.click("#run-search")
    errors = page.locator("#search-errors")
    assert "Case id is required" in errors.inner_text()
    assert page.get_attribute("#case-id", "aria-invalid") == "true"
    page.fill("#case-id", "C-console-1")
    page.fill("#reason", "console end-to-end test")
    page.set_input_files("#photos", str(photo))
    page.fill("#start", WINDOW["end"])
    page.fill("#end", WINDOW["start"])
    view.expect_http_error(422)
    page.click("#run-search")
    page.wait_for_selector("#search-errors:has-text('HTTP 422')")
    assert "before start" in errors.inner_text()


def _area_drawn_on_the_map(view: _Page) -> None:
    """Three clicks on the map under "More filters" make a triangle in #area (drawn on
    the map); undo drops a corner; clear empties it."""
    page = view.page
    page.click("#search-form details summary")
    page.locator("#area-map").scroll_into_view_if_needed()
    box = page.locator("#area-map").bounding_box()
    for fx, fy in ((0.3, 0.3), (0.7, 0.3), (0.5, 0.7)):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    corners = page.input_value("#area").split(";")
    assert len(corners) == 3 and all(len(c.split(",")) == 2 for c in corners), corners
    assert page.locator("#area-map polygon.area").count() == 1
    view.shot("area-drawn")
    page.click("#area-undo")
    assert len(page.input_value("#area").split(";")) == 2
    page.click("#area-clear")
    assert page.input_value("#area") == ""
    assert page.locator("#area-map .area").count() == 0


def _exported_report(page) -> str:
    with page.expect_download() as download:
        page.click("#export-report")
    return Path(download.value.path()).read_text(encoding="utf-8")


def _watch_alert_arrives_live(view: _Page, svc: dict) -> None:
    """The search form opens a standing watch (threshold lowered so the person's replayed
    sightings match); the Watches page lists it and follows the live stream; a camera
    added at run time replays cam01's recording, and the watch's alert appears on the
    page as it is raised; then the watch is closed and the camera removed."""
    page = view.page
    page.fill("#min-confidence", "0.3")
    page.click("#open-watch")
    page.wait_for_selector("#search-busy:has-text('opened')", timeout=60_000)
    page.click("#nav a:has-text('Watches & alerts')")
    page.wait_for_selector("#watch-table td:has-text('C-console-1')")
    page.wait_for_selector("#stream-state:has-text('Live: connected')")
    assert page.locator("#live-alerts li[data-kind='watch_alert']").count() == 0
    client, tokens = svc["client"], svc["tokens"]
    replay = {**svc["site"].cameras[0].model_dump(mode="json", exclude_none=True), "id": "replay"}
    added = client.post("/cameras", json=replay, headers=_auth(tokens, "operator"))
    assert added.status_code in (200, 201), added.text
    try:
        alert = "#live-alerts li[data-kind='watch_alert']:has-text('C-console-1')"
        page.wait_for_selector(alert, timeout=180_000)
        assert "replay" in page.inner_text(alert)
        view.shot("watch-alert")
        page.click("#watch-table button:has-text('Close')")
        page.wait_for_selector("#watches:has-text('No open watches')")
    finally:
        client.delete("/cameras/replay", headers=_auth(tokens, "operator"))


def _operator_pages_refused(view: _Page, svc: dict) -> None:
    """Not offered in the menu, not rendered at its address, and refused by the API."""
    page = view.page
    assert page.locator("#nav a:has-text('Operations')").count() == 0
    page.evaluate("window.location.hash = '#/operations'")
    page.wait_for_selector("text=not available to the analyst role")
    assert page.locator("#camera-table").count() == 0
    view.shot("operations-refused")
    client, tokens = svc["client"], svc["tokens"]
    assert client.get("/cameras", headers=_auth(tokens, "analyst")).status_code == 403
    assert client.get("/deployments", headers=_auth(tokens, "analyst")).status_code == 403


@pytest.mark.integration
def test_analyst_finds_the_true_person_first_confirms_and_sees_the_route(
    console_service, browser, shots, tiny_site
):
    svc = console_service
    person, owner = _true_owner(tiny_site, svc["site"], str(svc["site"].storage.root))
    view = _Page(browser, 1366, 768, shots, "analyst")
    page = view.page
    view.login(svc["url"], svc["tokens"]["analyst"])
    assert view.nav() == ["Search", "Watches & alerts"]
    page.wait_for_selector("#search-form")
    view.shot("search-form")
    _search_form_refuses_a_bad_query(view, tiny_site / f"reference/p{person:04d}.png")

    _area_drawn_on_the_map(view)
    page.fill("#start", WINDOW["start"])
    page.fill("#end", WINDOW["end"])
    page.click("#run-search")
    # a search job: progress, then the candidates streamed in, then done
    page.wait_for_selector("#job-progress progress", timeout=120_000)
    page.wait_for_selector("#search-busy:has-text('done')", timeout=120_000)
    page.wait_for_selector("#candidates li.card", timeout=120_000)
    cards = page.locator("#candidates li.card")
    # the best sighting's thumbnail, fetched with the key (bystanders' heads blurred)
    page.wait_for_selector("#candidates li.card:first-child img.thumb-img", timeout=60_000)
    _until(page, "document.querySelector('#candidates li.card img.thumb-img').naturalWidth > 0")
    top_key = cards.first.get_attribute("data-key")
    assert owner.get(top_key) == person, (top_key, owner)
    assert cards.first.locator(".badge").first.inner_text() == "good match"
    assert page.inner_text("#verdict").endswith(("good match", "good matches"))
    search_id = page.inner_text("#search-id")
    assert search_id.startswith("job-"), search_id
    assert page.evaluate(NO_SIDEWAYS_SCROLL), "the page scrolls sideways"
    view.shot("results")

    # confirm with the keyboard; the list is re-ranked and the route is shown
    page.focus(f'li[data-key="{top_key}"] button.confirm')
    page.keyboard.press("Enter")
    page.wait_for_selector(f'li.card.confirmed[data-key="{top_key}"]')
    page.wait_for_selector("#route-timeline tbody tr")
    assert owner.get(cards.first.get_attribute("data-key")) == person
    assert page.locator("#route svg.map .route-step").count() >= 1
    steps = page.locator("#route-timeline tbody tr").all_inner_texts()
    assert steps and all(("cam01" in s) or ("cam02" in s) for s in steps)
    view.shot("confirmed-route")

    report = _exported_report(page)
    assert search_id in report and "C-console-1" in report and top_key in report
    assert "<script" not in report and "data:image/jpeg;base64," in report

    _watch_alert_arrives_live(view, svc)
    _operator_pages_refused(view, svc)
    page.click("#logout")
    page.wait_for_selector("#api-key")
    assert page.evaluate("window.sessionStorage.length") == 0
    view.close()


@pytest.mark.integration
@pytest.mark.parametrize("width,height", [(1920, 1080), (1366, 768)])
def test_data_key_sees_the_crowd_alert_and_density(console_service, browser, shots, width, height):
    svc = console_service
    view = _Page(browser, width, height, shots, "data")
    page = view.page
    view.login(svc["url"], svc["tokens"]["data"])
    assert view.nav() == ["Alerts", "Density"]
    page.wait_for_selector("#live-alerts li.start:has-text('Crowd alert in plaza')")
    page.wait_for_selector("#alert-table td:has-text('plaza')")
    view.shot("alerts")
    page.click("#nav a:has-text('Density')")
    page.wait_for_selector("#now-table tr[data-zone='plaza']")
    page.wait_for_selector("#density-series polyline[data-zone='plaza']")
    _until(
        page,
        "(() => { const i = document.querySelector('#heatmap-img');"
        " return !!i && i.complete && i.naturalWidth > 0; })()",
    )
    assert page.locator("#density-now svg.map polygon[data-zone='plaza']").count() == 1
    assert page.evaluate(NO_SIDEWAYS_SCROLL), "the page scrolls sideways"
    view.shot("density")
    view.close()


@pytest.mark.integration
def test_operator_sees_health_and_deployments_and_adds_and_removes_a_camera(
    console_service, browser, shots
):
    svc = console_service
    view = _Page(browser, 1366, 768, shots, "operator")
    page = view.page
    view.login(svc["url"], svc["tokens"]["operator"])
    assert view.nav() == ["Alerts", "Operations"]
    page.wait_for_selector("#live-alerts li.start:has-text('Crowd alert in plaza')")
    page.click("#nav a:has-text('Operations')")
    page.wait_for_selector("#camera-table tr[data-camera='cam02']")
    health = page.inner_text("#camera-table tr[data-camera='cam01']")
    assert "finished" in health
    page.wait_for_selector("#deployment-table td:has-text('console-test-detector')")
    assert page.locator("#batch-table tbody tr").count() == 2
    assert page.evaluate(NO_SIDEWAYS_SCROLL), "the page scrolls sideways"
    view.shot("operations")

    camera = svc["site"].cameras[0].model_dump(mode="json", exclude_none=True)
    page.fill("#camera-json", json.dumps({**camera, "id": "extra", "fps": -1}))
    view.expect_http_error(422)
    page.click("#add-camera button[type=submit]")
    page.wait_for_selector("#camera-errors:has-text('HTTP 422')")
    assert "fps" in page.inner_text("#camera-errors")
    page.fill("#camera-json", json.dumps({**camera, "id": "extra"}))
    page.click("#add-camera button[type=submit]")
    page.wait_for_selector("#camera-table tr[data-camera='extra']")
    page.click("button[aria-label='Remove camera extra']")
    page.click("button.confirm-remove")
    page.wait_for_selector("#camera-table tr[data-camera='extra']", state="detached")
    assert page.locator("#nav a:has-text('Search')").count() == 0
    page.evaluate("window.location.hash = '#/search'")
    page.wait_for_selector("text=not available to the operator role")
    view.shot("search-refused")
    view.close()
