"""A bounded open-loop HTTP load generator, for ``sightline bench api``.

:func:`run_load` offers requests at a fixed rate, each one scheduled at ``start + i / rate``
whatever the server does: a slow server shows up as latency, never as a lower offered rate.
Latency is measured from the *scheduled* send time, not from the moment the request was
actually written, so queueing in the generator or the server counts (no coordinated
omission). Memory is bounded: when ``max_in_flight`` requests are already outstanding, a
request that falls due is counted as ``dropped_overload`` and not sent.

The result is a JSON-able dict (see :func:`run_load`); :func:`meets` turns it into a
verdict against a target rate and p99, :func:`format_load_result` into one line of text.
This module needs aiohttp (installed with ``ray[serve]``) and numpy only; it does not
import Ray. aiohttp rather than httpx: on a busy 2-core machine httpx (1-3 ms of CPU a
request with many connections open) could not hold 200 req/s itself, while aiohttp held
400 req/s with a fifth of a core.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

__all__ = [
    "LoadRequest",
    "format_load_result",
    "meets",
    "run_load",
    "run_load_async",
    "shortfalls",
]

LoadRequest = tuple[str, str, str]
"""One request of the cycle: ``(name, method, path-with-query)``, e.g.
``("density", "GET", "/v1/density?camera=cam0")``."""

_PROGRESS_EVERY_S = 1.0


@dataclass
class _Tally:
    """What happened to the requests of one name (or of all of them)."""

    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    dropped_overload: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        return {
            "scheduled": self.scheduled,
            "sent": self.sent,
            "ok": self.ok,
            "errors": dict(sorted(self.errors.items())),
            "exceptions": dict(sorted(self.exceptions.items())),
            "dropped_overload": self.dropped_overload,
        }


def _quantiles_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    """Count, min, p50/p90/p99 and max in milliseconds (``None`` when there is no value)."""
    if not values_s:
        return {"n": 0, "min": None, "p50": None, "p90": None, "p99": None, "max": None}
    ms = np.asarray(values_s, dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "n": int(ms.size),
        "min": round(float(ms.min()), 3),
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "max": round(float(ms.max()), 3),
    }


def _check_arguments(
    requests: Sequence[LoadRequest], rate_per_s: float, duration_s: float, max_in_flight: int
) -> None:
    if not requests:
        raise ValueError("requests must name at least one (name, method, path)")
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate_per_s and duration_s must be positive")
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be at least 1")


class _Run:
    """Tallies and in-flight bookkeeping of one load run (one event loop)."""

    def __init__(self, requests: Sequence[LoadRequest], max_in_flight: int) -> None:
        self.total = _Tally()
        self.per_name = {name: _Tally() for name, _, _ in requests}
        self.send_lag_s: list[float] = []
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.max_in_flight_seen = 0
        self.last_done = 0.0

    def admit(self, name: str) -> bool:
        """Count a request that falls due; False (and counted as dropped) when full."""
        tallies = (self.total, self.per_name[name])
        for tally in tallies:
            tally.scheduled += 1
        if self.in_flight >= self.max_in_flight:
            for tally in tallies:
                tally.dropped_overload += 1
            return False
        for tally in tallies:
            tally.sent += 1
        self.in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
        return True

    async def send(self, client: aiohttp.ClientSession, request: LoadRequest, due: float) -> None:
        """Send one admitted request and record its outcome; latency is from ``due``."""
        name, method, path = request
        loop = asyncio.get_running_loop()
        tallies = (self.total, self.per_name[name])
        self.send_lag_s.append(loop.time() - due)
        try:
            async with client.request(method, path) as response:
                await response.read()  # the whole body, so the connection is reused
        except Exception as exc:  # every failure is counted, by type
            for tally in tallies:
                tally.exceptions[type(exc).__name__] += 1
        else:
            latency = loop.time() - due
            for tally in tallies:
                tally.latencies_s.append(latency)
                if 200 <= response.status < 300:
                    tally.ok += 1
                else:
                    tally.errors[str(response.status)] += 1
        finally:
            self.in_flight -= 1
            self.last_done = max(self.last_done, loop.time())

    def status(self, elapsed_s: float, duration_s: float) -> str:
        """One progress line."""
        return (
            f"{elapsed_s:.0f}/{duration_s:g} s: sent {self.total.sent}, ok {self.total.ok}, "
            f"in flight {self.in_flight}, dropped {self.total.dropped_overload}"
        )


async def _warm_up(client: aiohttp.ClientSession, requests: Sequence[LoadRequest]) -> None:
    """One untimed request per distinct entry, errors ignored: lazy imports, the first
    connection and the server's first-call costs stay out of the measurement."""
    for _, method, path in dict.fromkeys(requests):
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with client.request(method, path) as response:
                await response.read()


async def run_load_async(
    base_url: str,
    requests: Sequence[LoadRequest],
    *,
    rate_per_s: float,
    duration_s: float,
    headers: Mapping[str, str] | None = None,
    max_in_flight: int = 256,
    timeout_s: float = 5.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The coroutine behind :func:`run_load` (same arguments and result), for callers that
    already run an event loop."""
    _check_arguments(requests, rate_per_s, duration_s, max_in_flight)
    run = _Run(requests, max_in_flight)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(
        base_url=base_url,
        headers=dict(headers or {}),
        connector=aiohttp.TCPConnector(limit=max_in_flight),  # keep-alive pool
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as client:
        await _warm_up(client, requests)
        gc.freeze()  # a full collection must not scan the caller's heap (Ray, torch) mid-run
        try:
            start = loop.time()
            next_progress = start + _PROGRESS_EVERY_S
            for i in range(max(1, round(rate_per_s * duration_s))):
                due = start + i / rate_per_s
                delay = due - loop.time()
                # Always yield, so that sends already started progress even when behind schedule.
                await asyncio.sleep(max(0.0, delay))
                request = requests[i % len(requests)]
                if run.admit(request[0]):
                    task = asyncio.create_task(run.send(client, request, due))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if progress is not None and loop.time() >= next_progress:
                    next_progress += _PROGRESS_EVERY_S
                    progress(run.status(loop.time() - start, duration_s))
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            gc.unfreeze()

    elapsed = max(duration_s, run.last_done - start)
    completed = run.total.ok + sum(run.total.errors.values())
    return {
        "base_url": base_url,
        "offered_rate_per_s": round(rate_per_s, 3),
        "achieved_rate_per_s": round(completed / elapsed, 3),
        "duration_s": duration_s,
        "elapsed_s": round(elapsed, 3),
        "max_in_flight": max_in_flight,
        "max_in_flight_seen": run.max_in_flight_seen,
        "timeout_s": timeout_s,
        "counts": run.total.counts(),
        "latency_ms": _quantiles_ms(run.total.latencies_s),
        "send_lag_ms": _quantiles_ms(run.send_lag_s),
        "per_request": {
            name: {"counts": tally.counts(), "latency_ms": _quantiles_ms(tally.latencies_s)}
            for name, tally in run.per_name.items()
        },
    }


def run_load(
    base_url: str,
    requests: Sequence[LoadRequest],
    *,
    rate_per_s: float,
    duration_s: float,
    headers: Mapping[str, str] | None = None,
    max_in_flight: int = 256,
    timeout_s: float = 5.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Offer ``rate_per_s`` requests a second for ``duration_s`` seconds, open loop.

    ``round(rate_per_s * duration_s)`` requests are scheduled at ``start + i / rate_per_s``,
    cycling through ``requests`` round-robin, and sent over one keep-alive connection pool
    (``aiohttp.ClientSession``, at most ``max_in_flight`` connections). A request that falls
    due while ``max_in_flight`` are outstanding is dropped and counted, not sent. Before
    the clock starts, each distinct request is sent once, untimed and uncounted (warm-up);
    during the run the objects that already exist are frozen out of the garbage collector
    (``gc.freeze``), so a full collection of a large caller heap does not stall the
    generator. Runs its own event loop (use :func:`run_load_async` inside one).

    Args:
        base_url: Server root, e.g. ``"http://127.0.0.1:8000"``.
        requests: The ``(name, method, path-with-query)`` cycle; names key the per-request
            statistics (repeat a name to weight it).
        rate_per_s: Offered rate, requests per second.
        duration_s: How long requests are offered; the run then waits for the stragglers.
        headers: Sent with every request (e.g. ``{"Authorization": "Bearer ..."}``).
        max_in_flight: Bound on outstanding requests (and pool size).
        timeout_s: Per-request timeout; a timeout is counted as an exception.
        progress: Called about once a second with a one-line status.

    Returns:
        A JSON-able dict: ``base_url``, ``offered_rate_per_s``, ``achieved_rate_per_s``
        (responses of any status per second of ``elapsed_s``), ``duration_s``,
        ``elapsed_s`` (``duration_s`` or longer, up to the last response),
        ``max_in_flight``, ``max_in_flight_seen``, ``timeout_s``; ``counts`` with
        ``scheduled``, ``sent``, ``ok`` (2xx), ``errors`` (count by status code, as a
        string), ``exceptions`` (count by exception type) and ``dropped_overload``
        (``scheduled == sent + dropped_overload``, ``sent == ok + errors + exceptions``);
        ``latency_ms`` (``n``, ``min``, ``p50``, ``p90``, ``p99``, ``max``: responses of any status,
        from the scheduled send time); ``send_lag_ms`` (how late the generator itself sent,
        same keys: large values mean the generator, not the server, is the bottleneck);
        ``per_request``: ``{name: {"counts": ..., "latency_ms": ...}}``.
    """
    return asyncio.run(
        run_load_async(
            base_url,
            requests,
            rate_per_s=rate_per_s,
            duration_s=duration_s,
            headers=headers,
            max_in_flight=max_in_flight,
            timeout_s=timeout_s,
            progress=progress,
        )
    )


def shortfalls(result: Mapping[str, Any], rate_per_s: float, p99_ms: float) -> list[str]:
    """Why ``result`` misses the target (empty when it meets it): achieved rate below
    98 % of ``rate_per_s``, overall p99 not below ``p99_ms``, or any error, exception or
    dropped request."""
    problems = []
    achieved = result["achieved_rate_per_s"]
    if achieved < 0.98 * rate_per_s:
        problems.append(f"achieved {achieved:.1f} req/s < 98% of {rate_per_s:g}")
    p99 = result["latency_ms"]["p99"]
    if p99 is None or p99 >= p99_ms:
        problems.append(f"p99 {p99} ms not < {p99_ms:g} ms")
    counts = result["counts"]
    for kind in ("errors", "exceptions"):
        if counts[kind]:
            problems.append(f"{kind}: {counts[kind]}")
    if counts["dropped_overload"]:
        problems.append(f"dropped (overload): {counts['dropped_overload']}")
    return problems


def meets(result: Mapping[str, Any], rate_per_s: float, p99_ms: float) -> bool:
    """True when ``result`` held ``rate_per_s`` (achieved >= 98 %), had p99 < ``p99_ms``
    and no error, exception or dropped request (see :func:`shortfalls`)."""
    return not shortfalls(result, rate_per_s, p99_ms)


def format_load_result(result: Mapping[str, Any]) -> str:
    """One paragraph for people: rates, counts, latency overall and per request name."""
    counts = result["counts"]
    lat = result["latency_ms"]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    parts = [
        f"{result['base_url']}: offered {result['offered_rate_per_s']:g} req/s for "
        f"{result['duration_s']:g} s, achieved {result['achieved_rate_per_s']:.1f} req/s; "
        f"{counts['sent']} sent, {counts['ok']} ok, errors {counts['errors'] or 0}, "
        f"exceptions {counts['exceptions'] or 0}, {counts['dropped_overload']} dropped; "
        f"latency p50/p90/p99/max {ms(lat['p50'])}/{ms(lat['p90'])}/{ms(lat['p99'])}/"
        f"{ms(lat['max'])} ms"
    ]
    for name, stats in result["per_request"].items():
        one = stats["latency_ms"]
        parts.append(f"{name} p50/p99 {ms(one['p50'])}/{ms(one['p99'])} ms")
    return "; ".join(parts) + "."
