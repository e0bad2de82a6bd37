"""The open-loop load generator (serve.load) against a small uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from serve.load import format_load_result, meets, run_load, shortfalls

_CLIENT_PORTS: list[int] = []  # the client port of every /fast request (keep-alive check)


def _app() -> FastAPI:
    app = FastAPI()
    serial = asyncio.Lock()

    @app.get("/fast")
    async def fast(request: Request) -> dict:
        _CLIENT_PORTS.append(request.client.port if request.client else 0)
        return {"ok": True, "key": request.headers.get("x-api-key")}

    @app.get("/slow")
    async def slow(ms: int = 50) -> dict:
        await asyncio.sleep(ms / 1000)
        return {"slept_ms": ms}

    @app.get("/fail")
    async def fail() -> JSONResponse:
        return JSONResponse({"error": "boom"}, status_code=500)

    @app.get("/serial")
    async def serial_route() -> dict:
        # One request at a time, 40 ms each: at most 25 req/s, so a queue builds.
        async with serial:
            await asyncio.sleep(0.04)
        return {}

    @app.get("/needs-key")
    async def needs_key(request: Request) -> JSONResponse:
        ok = request.headers.get("x-api-key") == "secret"
        return JSONResponse({}, status_code=200 if ok else 401)

    return app


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(_app(), log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


def _check_invariants(result: dict) -> None:
    for stats in [result, *result["per_request"].values()]:
        counts = stats["counts"]
        assert counts["scheduled"] == counts["sent"] + counts["dropped_overload"]
        answered = counts["ok"] + sum(counts["errors"].values())
        assert counts["sent"] == answered + sum(counts["exceptions"].values())
        assert stats["latency_ms"]["n"] == answered


def test_mixed_counts_errors_and_latency(base_url: str) -> None:
    requests = [("fast", "GET", "/fast"), ("slow", "GET", "/slow?ms=50"), ("fail", "GET", "/fail")]
    messages: list[str] = []
    result = run_load(base_url, requests, rate_per_s=60, duration_s=1.5, progress=messages.append)
    _check_invariants(result)
    counts = result["counts"]
    assert counts == {
        "scheduled": 90,
        "sent": 90,
        "ok": 60,
        "errors": {"500": 30},
        "exceptions": {},
        "dropped_overload": 0,
    }
    per = result["per_request"]
    assert [per[name]["counts"]["scheduled"] for name in ("fast", "slow", "fail")] == [30] * 3
    assert per["fail"]["counts"]["errors"] == {"500": 30}
    assert per["fast"]["counts"]["errors"] == {} and per["fast"]["counts"]["ok"] == 30
    # Every slow answer took at least its 50 ms sleep; the fast ones are far quicker.
    slow = per["slow"]["latency_ms"]
    assert slow["n"] == 30 and slow["min"] >= 50
    assert per["fast"]["latency_ms"]["p50"] < slow["p50"]
    lat = result["latency_ms"]
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert result["offered_rate_per_s"] == 60
    assert messages, "progress was never called"
    assert not meets(result, 60, 1000)
    assert any("errors" in problem for problem in shortfalls(result, 60, 1000))
    text = format_load_result(result)
    assert "offered 60 req/s" in text and "'500': 30" in text and "slow p50/p99" in text


def test_fast_endpoint_holds_the_offered_rate(base_url: str) -> None:
    _CLIENT_PORTS.clear()
    began = time.monotonic()
    result = run_load(base_url, [("fast", "GET", "/fast")], rate_per_s=50, duration_s=2)
    wall_s = time.monotonic() - began
    _check_invariants(result)
    counts = result["counts"]
    assert counts["scheduled"] == 100 and counts["ok"] == 100 and counts["dropped_overload"] == 0
    assert result["offered_rate_per_s"] == 50
    # Paced, not a burst: the last request is due 1.98 s after the first.
    assert wall_s >= 1.95
    # Generous: server and client share one process (and the GIL) on a busy 2-core box.
    assert 30 <= result["achieved_rate_per_s"] <= 50
    assert result["elapsed_s"] < 3.5
    assert result["send_lag_ms"]["p50"] < 100
    # Keep-alive pool: connections are reused, never more than were ever needed at once.
    assert len(_CLIENT_PORTS) == 101  # with the warm-up request
    assert len(set(_CLIENT_PORTS)) <= max(1, result["max_in_flight_seen"])


def test_headers_are_sent(base_url: str) -> None:
    good = run_load(
        base_url,
        [("k", "GET", "/needs-key")],
        rate_per_s=50,
        duration_s=0.2,
        headers={"X-API-Key": "secret"},
    )
    bad = run_load(base_url, [("k", "GET", "/needs-key")], rate_per_s=50, duration_s=0.2)
    assert good["counts"]["ok"] == 10 and good["counts"]["errors"] == {}
    assert bad["counts"]["ok"] == 0 and bad["counts"]["errors"] == {"401": 10}


def test_overload_is_dropped_not_queued(base_url: str) -> None:
    # 100 req/s of a 200 ms endpoint needs ~20 in flight; with 2 allowed, most are dropped.
    result = run_load(
        base_url,
        [("slow", "GET", "/slow?ms=200")],
        rate_per_s=100,
        duration_s=1,
        max_in_flight=2,
    )
    _check_invariants(result)
    counts = result["counts"]
    assert counts["scheduled"] == 100
    assert counts["dropped_overload"] >= 70
    assert 2 <= counts["sent"] <= 30 and counts["ok"] == counts["sent"]
    assert result["max_in_flight_seen"] == 2
    assert not meets(result, 100, 10_000)


def test_latency_counts_from_the_scheduled_time(base_url: str) -> None:
    # The generator itself stalls 300 ms (its progress callback blocks the event loop):
    # requests due meanwhile go out late, and that wait is part of their latency.
    stalls: list[float] = []

    def stall(_message: str) -> None:
        if not stalls:
            stalls.append(time.monotonic())
            time.sleep(0.3)

    result = run_load(
        base_url, [("fast", "GET", "/fast")], rate_per_s=40, duration_s=1.5, progress=stall
    )
    assert stalls
    _check_invariants(result)
    assert result["counts"]["ok"] == 60
    assert result["send_lag_ms"]["max"] >= 250
    assert result["latency_ms"]["max"] >= 250


def test_slow_server_shows_as_latency_not_a_lower_offered_rate(base_url: str) -> None:
    # 50 req/s offered to a server that does 25 req/s: all are sent on schedule, the queue
    # grows for 1 s, so late requests wait ~1 s. A closed-loop client would send fewer
    # and report ~40 ms for each.
    result = run_load(base_url, [("serial", "GET", "/serial")], rate_per_s=50, duration_s=1)
    _check_invariants(result)
    assert result["counts"]["ok"] == 50
    assert result["latency_ms"]["p50"] >= 200
    assert result["latency_ms"]["max"] >= 600
    assert result["elapsed_s"] >= 1.6
    assert result["achieved_rate_per_s"] <= 32


def test_timeouts_are_counted_as_exceptions(base_url: str) -> None:
    result = run_load(
        base_url,
        [("slow", "GET", "/slow?ms=1000"), ("fast", "GET", "/fast")],
        rate_per_s=20,
        duration_s=0.2,
        timeout_s=0.2,
    )
    _check_invariants(result)
    counts = result["counts"]
    assert counts["exceptions"] == {"TimeoutError": 2}
    assert counts["ok"] == 2
    assert result["per_request"]["slow"]["latency_ms"]["n"] == 0
    assert result["per_request"]["slow"]["latency_ms"]["p99"] is None


def test_refused_connections_are_exceptions() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        result = run_load(
            f"http://127.0.0.1:{port}", [("x", "GET", "/")], rate_per_s=20, duration_s=0.2
        )
    assert result["counts"]["exceptions"] == {"ClientConnectorError": 4}
    assert result["achieved_rate_per_s"] == 0
    assert "p99 None" in " ".join(shortfalls(result, 20, 200))


def _result(achieved: float, p99: float | None, **counts: object) -> dict:
    base = {"errors": {}, "exceptions": {}, "dropped_overload": 0}
    return {
        "achieved_rate_per_s": achieved,
        "latency_ms": {"p99": p99},
        "counts": base | counts,
    }


def test_meets_verdict() -> None:
    assert meets(_result(199.0, 150.0), 200, 200)
    assert not meets(_result(195.0, 150.0), 200, 200)  # below 98 %
    assert not meets(_result(200.0, 200.0), 200, 200)  # p99 must be strictly below
    assert not meets(_result(200.0, None), 200, 200)
    assert not meets(_result(200.0, 10.0, errors={"503": 1}), 200, 200)
    assert not meets(_result(200.0, 10.0, exceptions={"TimeoutError": 1}), 200, 200)
    assert not meets(_result(200.0, 10.0, dropped_overload=1), 200, 200)
    assert shortfalls(_result(199.0, 150.0), 200, 200) == []


@pytest.mark.parametrize(
    ("kwargs", "requests"),
    [
        ({"rate_per_s": 0, "duration_s": 1}, [("a", "GET", "/")]),
        ({"rate_per_s": 10, "duration_s": -1}, [("a", "GET", "/")]),
        ({"rate_per_s": 10, "duration_s": 1, "max_in_flight": 0}, [("a", "GET", "/")]),
        ({"rate_per_s": 10, "duration_s": 1}, []),
    ],
)
def test_bad_arguments(kwargs: dict, requests: list) -> None:
    with pytest.raises(ValueError):
        run_load("http://127.0.0.1:9", requests, **kwargs)
