"""Property-based fuzzing of the HTTP API (``serve.api.create_app``) from its own OpenAPI
spec with schemathesis.

* With a key of the role the route needs, valid (positive) and schema-violating
  (negative) parameters and bodies must never get a 5xx. The only 5xx allowed are the
  app's deliberate 503s for what this test app is built without (no running pipeline, no
  photo embedder): :data:`DESIGNED_503`.
* Without a valid key (none, unknown, malformed), every operation must answer 401.

Roles come from test_api's ``ROUTES``; an operation of the spec that ``ROUTES`` does not
list yet is still fuzzed, by ``test_operations_missing_from_routes``, with the role its
403 names. Path ids are sometimes real ones (a search run in the fixture, ``g1``,
``cam1``), so the fuzzer gets past the 404s into refine and route handlers.

Bounded and deterministic (``derandomize=True``, no example database): CI sends the
same requests every run. Hypothesis drives ``APIOperation.as_strategy`` directly rather
than ``schemathesis.pytest.from_fixture(...).parametrize()``, whose lazy loader (4.32)
sets ``node._nodeid``, which pytest 9.2 items no longer have.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from serve.api import create_app
from sightline.search import SearchQuery
from sightline.security import KeyStore
from tests.test_api import ROLES, ROUTES, SEARCH, _auth, _fill_store, _search, _site_config
from tests.test_search_helpers import person_vector

EXAMPLES = int(os.environ.get("SIGHTLINE_FUZZ_EXAMPLES", "25"))
"""Examples per operation and mode; raise it for a deeper local run."""

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # no shrinking: each step is a request, and the failing request is printed as curl
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)

_OLD_LOCAL = "0001-01-01T00:00:00+00:01"  # the year before 1 in UTC
_NEW_LOCAL = "9999-12-31T23:59:59-00:01"  # the year after 9999 in UTC
_WINDOW = {"start": "2000-01-01T00:00:00Z", "end": "2000-01-02T00:00:00Z"}
_BODY = {**SEARCH, "embeddings": [person_vector(1).tolist()]}

REGRESSIONS: dict[str, list[dict[str, Any]]] = {
    "GET /tracks": [
        {"query": {**_WINDOW, "start": "0001-01-01T00:00:00Z"}},
        {"query": {**_WINDOW, "start": _OLD_LOCAL}},
    ],
    "GET /density/zones": [{"query": {**_WINDOW, "end": _NEW_LOCAL}}],
    "GET /density/summary": [{"query": {**_WINDOW, "start": _OLD_LOCAL}}],
    "GET /density/alerts": [{"query": {"start": _OLD_LOCAL}}],
    "GET /density/heatmap.png": [{"query": {**_WINDOW, "start": _OLD_LOCAL}}],
    "POST /searches": [
        {"body": {**_BODY, "start": _OLD_LOCAL}},
        {"body": {**_BODY, "start": "0001-01-01T00:00:00Z"}},
        {"body": {**_BODY, "last_seen": {"x": 1, "y": 1, "time": _OLD_LOCAL}}},
    ],
    "POST /watches": [{"body": {**_BODY, "end": _NEW_LOCAL}}],
}
"""5xx the fuzzer (or a probe of the same inputs on sibling routes) found, replayed as
explicit examples on every run, before the generated ones (the example database is off).
JSON bodies with NaN cannot be sent from here (``requests`` refuses them)."""

DESIGNED_503 = {"pipeline not running", "pipeline unavailable", "embedder unavailable"}
"""``error`` kinds of the 503s the app answers on purpose when it has no pipeline
(``ops=None``) or no embedder, as here: not crashes."""

MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]

TOKEN_CHARS = string.ascii_letters + string.digits + "_-."
GARBAGE_HEADERS = st.one_of(
    st.sampled_from(
        [
            {},
            {"Authorization": "Bearer sl_0123456789abcdef_" + "x" * 43},
            {"Authorization": "Bearer "},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": "sl_0123456789abcdef_" + "x" * 43},
            {"X-API-Key": "junk"},
            {"X-API-Key": ""},
        ]
    ),
    st.text(TOKEN_CHARS, min_size=1, max_size=80).map(lambda t: {"Authorization": f"Bearer {t}"}),
    st.text(TOKEN_CHARS, min_size=1, max_size=80).map(lambda t: {"X-API-Key": t}),
)


@dataclass
class Fuzz:
    schema: Any
    tokens: dict[str, str]
    known_ids: dict[str, str]  # path parameter -> an id that exists in the fixture's data

    def operation(self, method: str, concrete_path: str) -> Any:
        """The spec's operation that serves ``method concrete_path`` (a ROUTES entry)."""
        path = concrete_path.split("?", maxsplit=1)[0]
        matches = [
            op
            for op in self.operations()
            if op.method.upper() == method and re.fullmatch(_path_pattern(op.path), path)
        ]
        assert matches, f"{method} {path}: no such operation in the OpenAPI spec"
        return min(matches, key=lambda op: op.path.count("{"))

    def operations(self) -> list[Any]:
        return [result.ok() for result in self.schema.get_all_operations()]

    def role(self, operation: Any) -> str:
        """The role a ROUTES entry gives ``operation``, else the first whose key is not 403."""
        for method, path, role in ROUTES:
            if self.operation(method, path) == operation:
                return role
        url = re.sub(r"\{[^}]+\}", "x", operation.path)
        client = TestClient(operation.app)
        for role in ROLES:
            response = client.request(operation.method, url, headers=_auth(self.tokens, role))
            if response.status_code != 403:
                return role
        raise AssertionError(f"{operation.label}: every role is refused")

    def cases(self, operation: Any, mode: GenerationMode) -> st.SearchStrategy:
        """Generated cases, and as many with the known ids in the path."""
        strategy = operation.as_strategy(mode)
        names = [p.name for p in operation.path_parameters]
        known = {name: self.known_ids[name] for name in names if name in self.known_ids}
        if known and mode == GenerationMode.POSITIVE:
            return st.one_of(strategy, operation.as_strategy(mode, path_parameters=known))
        return strategy


def _path_pattern(template: str) -> str:
    parts = re.split(r"(\{[^}]+\})", template)
    return "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)


def _negatable(operation: Any) -> bool:
    """Only query parameters and bodies can be made to violate the schema (path ids are
    free strings, and these operations take no headers or cookies)."""
    return bool(operation.query) or bool(operation.body)


def _spec_with_search_bodies(app: Any) -> dict[str, Any]:
    """The app's OpenAPI spec, with the JSON body of ``POST /searches`` and ``POST
    /watches`` (an opaque object there) described by :class:`SearchQuery`'s JSON schema,
    so that the fuzzer reaches query parsing and the search itself."""
    spec = TestClient(app).get("/openapi.json").json()
    body = SearchQuery.model_json_schema(ref_template="#/components/schemas/{model}")
    spec.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs", {}))
    for internal in ("photos", "requested_by", "expansion", "photo_warnings"):
        body["properties"].pop(internal, None)  # refused in JSON or set by the API
    body["required"] = ["case_id", "reason", "start", "end"]
    watch = {**body, "properties": {**body["properties"], "threshold": {"type": "number"}}}
    for path, schema in (("/searches", body), ("/watches", watch)):
        content = spec["paths"].get(path, {}).get("post", {}).get("requestBody", {})
        if "application/json" in content.get("content", {}):
            content["content"]["application/json"]["schema"] = schema
    return spec


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    """The app built as test_api's ``api`` fixture builds it, its schema and ids."""
    tmp_path = tmp_path_factory.mktemp("api_fuzz")
    site = _site_config(tmp_path)
    _fill_store(site)
    keys = KeyStore(tmp_path / "keys.json", create=True, iterations=1)
    tokens = {role: keys.create(f"{role}-user", role)[1] for role in ROLES}
    app = create_app(site, keys_file=tmp_path / "keys.json", audit_dir=tmp_path / "audit")
    created = _search(TestClient(app), tokens)
    assert created.status_code == 201, created.text
    known_ids = {
        "search_id": created.json()["search_id"],
        "key": "g1",
        "global_id": "g1",
        "camera_id": "cam1",
    }
    schema = schemathesis.openapi.from_dict(_spec_with_search_bodies(app))
    schema.app = app  # calls go to the app in-process, as from_asgi does
    return Fuzz(schema, tokens, known_ids)


def _call_with_role(case: Any, headers: dict[str, str]) -> None:
    response = case.call(headers=headers)
    if response.status_code == 503 and _error_kind(response) in DESIGNED_503:
        return
    case.validate_response(response, checks=[not_a_server_error], headers=headers)


def _error_kind(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _fuzz_with_role(fuzz: Fuzz, operation: Any, mode: GenerationMode) -> None:
    headers = _auth(fuzz.tokens, fuzz.role(operation))

    def check(case):
        _call_with_role(case, headers)

    check = given(case=fuzz.cases(operation, mode))(check)
    if mode == GenerationMode.POSITIVE:
        for fields in REGRESSIONS.get(operation.label, []):
            media = {"media_type": "application/json"} if "body" in fields else {}
            check = example(case=operation.Case(**fields, **media))(check)
    FUZZ(check)()


def _fuzz_without_key(operation: Any) -> None:
    @FUZZ
    @given(case=operation.as_strategy(), headers=GARBAGE_HEADERS)
    def check(case, headers):
        response = case.call(headers=headers)
        assert response.status_code == 401, (case.operation.label, headers, response.text)

    check()


ROUTE_IDS = [f"{method} {path.split('?')[0]}" for method, path, _ in ROUTES]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path", "role"), ROUTES, ids=ROUTE_IDS)
def test_no_server_errors_with_the_right_role(fuzz, method, path, role, mode):
    operation = fuzz.operation(method, path)
    if mode == GenerationMode.NEGATIVE and not _negatable(operation):
        pytest.skip("no query parameters or body to violate")
    _fuzz_with_role(fuzz, operation, mode)


@pytest.mark.parametrize(("method", "path", "role"), ROUTES, ids=ROUTE_IDS)
def test_without_a_valid_key_every_operation_is_401(fuzz, method, path, role):
    _fuzz_without_key(fuzz.operation(method, path))


def test_operations_missing_from_routes(fuzz):
    """Operations test_api's ROUTES does not list yet, fuzzed all three ways here; the
    failures of all of them are reported together."""
    listed = {fuzz.operation(method, path) for method, path, _ in ROUTES}
    missing = [op for op in fuzz.operations() if op not in listed]
    failures = []
    for operation in missing:
        runs = [("positive", lambda op: _fuzz_with_role(fuzz, op, MODES[0]))]
        if _negatable(operation):
            runs.append(("negative", lambda op: _fuzz_with_role(fuzz, op, MODES[1])))
        runs.append(("no key", _fuzz_without_key))
        for name, run in runs:
            try:
                run(operation)
            except Unsatisfiable:
                continue
            except Exception as exc:
                exc.add_note(f"{operation.label} ({name})")
                failures.append(exc)
    if failures:
        raise ExceptionGroup(f"{len(failures)} fuzz failures outside ROUTES", failures)
