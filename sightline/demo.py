"""The analyst part of ``sightline demo``: search for one person of the simulated site.

After the pipeline has filled the site's store, the demo does what an analyst would:

1. picks the person to look for with a fixed rule on the ground truth alone
   (:func:`pick_demo_person`: the person visible on the most cameras, then the longest
   visible, then the lowest id), never by looking at search results;
2. runs a **photo search** with that person's reference photo (``reference/pNNNN.png``)
   and a **description search** built from ``gt/people.parquet`` (upper and lower colour,
   height +- 0.1 m, child or adult: the description queries of ``sightline eval
   search``), each audited like ``sightline search`` (principal ``demo``, role
   ``analyst``, a case id and a reason) (:func:`run_demo_searches`);
3. marks each candidate with the true person who covers most of its frames (the mapping
   of :func:`~sightline.evaluation.search.identity_people`) and compares the top
   candidate's route with where the person really was, camera by camera
   (:func:`route_vs_truth`), and says whether the scheduled crowd event raised an alert
   (:func:`crowd_alerts_vs_events`);
4. prints it all (:func:`format_search_report`) and writes ``report.md`` and a
   self-contained ``report.html`` with the candidates, their thumbnails (heads of
   everyone but the candidate blurred), the route, zone densities, alerts and the site
   heatmap (:func:`write_report`).

No Ray here: searches run in this process with the built-in models, as
``sightline search`` runs them.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from sightline.config import SiteConfig
from sightline.search.query import Description, SearchQuery
from sightline.search.results import Candidate, SearchResult, Sighting
from sightline.search.thumbnails import FrameDetections, candidate_thumbnails

__all__ = [
    "DEMO_PRINCIPAL",
    "VISIBLE",
    "DemoPerson",
    "DemoSearch",
    "DemoSearches",
    "candidate_rows",
    "crowd_alerts_vs_events",
    "description_for",
    "format_search_report",
    "format_timings",
    "pick_demo_person",
    "route_vs_truth",
    "run_demo_searches",
    "write_report",
]

VISIBLE = 0.5
"""A ground-truth box counts as "the person is on this camera" from this visibility on
(the share of the person's pixels actually in view), as in the detection scores."""

DEMO_PRINCIPAL = "demo"
"""Who the demo's searches are audited as (``sightline search`` uses ``cli:<user>``)."""

HEIGHT_MARGIN_M = 0.1
"""Description queries ask for the true height +- this, as ``sightline eval search`` does."""

_GAP_S = 1.0  # a person unseen for longer than this starts a new interval


# --------------------------------------------------------------------------- the person


@dataclass(frozen=True)
class DemoPerson:
    """The person the demo looks for, and what the family would tell the police."""

    person_id: int
    cameras: list[str]
    visible_s: float
    upper_colour: str
    lower_colour: str
    height_m: float
    is_child: bool
    photo: Path
    hat: bool = False
    bag: bool = False

    def describe(self) -> str:
        """One line: who, what they wear, where the ground truth has them."""
        who = "child" if self.is_child else "adult"
        worn = "".join(f", {item}" for item in ("hat", "bag") if getattr(self, item))
        return (
            f"p{self.person_id:04d} ({who}, {self.height_m:.2f} m, top {self.upper_colour}, "
            f"bottom {self.lower_colour}{worn}), visible on {len(self.cameras)} cameras "
            f"({', '.join(self.cameras)}) for {self.visible_s:.1f} s"
        )


def _visible(gt_boxes: pl.DataFrame) -> pl.DataFrame:
    return gt_boxes.filter(pl.col("visibility") >= VISIBLE)


def pick_demo_person(site_dir: Path) -> DemoPerson:
    """The person to search for, from the ground truth only (``gt/boxes.parquet`` and
    ``gt/people.parquet``): visible (>= :data:`VISIBLE`) on the most cameras; of those,
    visible in the most frames; then the lowest person id. The same site always gives
    the same person, whatever the pipeline or the search found."""
    site_dir = Path(site_dir)
    boxes = pl.read_parquet(site_dir / "gt" / "boxes.parquet")
    frames = pl.read_parquet(site_dir / "gt" / "frames.parquet")
    fps = _fps(frames)
    per_person = (
        _visible(boxes)
        .group_by("person_id")
        .agg(
            n_cameras=pl.col("camera_id").n_unique(),
            n_frames=pl.len(),
            cameras=pl.col("camera_id").unique().sort(),
        )
        .sort(["n_cameras", "n_frames", "person_id"], descending=[True, True, False])
    )
    if per_person.is_empty():
        raise ValueError(f"{site_dir}: no person is visible on any camera in gt/boxes.parquet")
    best = per_person.row(0, named=True)
    people = pl.read_parquet(site_dir / "gt" / "people.parquet")
    row = people.filter(pl.col("person_id") == best["person_id"]).row(0, named=True)
    return DemoPerson(
        person_id=int(best["person_id"]),
        cameras=list(best["cameras"]),
        visible_s=round(best["n_frames"] / fps, 1),
        upper_colour=row["upper_colour"],
        lower_colour=row["lower_colour"],
        height_m=float(row["height_m"]),
        is_child=bool(row["is_child"]),
        photo=site_dir / "reference" / f"p{best['person_id']:04d}.png",
        hat=row["hat_colour"] is not None,
        bag=row["bag_colour"] is not None,
    )


def _fps(frames: pl.DataFrame) -> float:
    """Frames per second of one camera of ``gt/frames.parquet`` (frames over duration)."""
    one = frames.filter(pl.col("camera_id") == frames["camera_id"][0]).sort("ts")
    if one.height < 2:
        return 1.0
    span = (one["ts"][-1] - one["ts"][0]).total_seconds()
    return (one.height - 1) / span if span > 0 else 1.0


def description_for(person: DemoPerson) -> Description:
    """The description a family would give: colours, height +- :data:`HEIGHT_MARGIN_M`,
    child or adult, hat or not, bag or not (as ``sightline eval search`` builds its
    description queries)."""
    return Description(
        upper_colour=person.upper_colour,
        lower_colour=person.lower_colour,
        height_min_m=max(0.5, person.height_m - HEIGHT_MARGIN_M),
        height_max_m=min(2.5, person.height_m + HEIGHT_MARGIN_M),
        child=person.is_child,
        hat=person.hat,
        bag=person.bag,
    )


# --------------------------------------------------------------------------- searches


@dataclass
class DemoSearch:
    """One search the demo ran: which kind, its query in words, result and duration."""

    kind: str
    asked: str
    result: SearchResult
    seconds: float


@dataclass
class DemoSearches:
    """The demo's searches for one person, with each candidate key's true person."""

    person: DemoPerson
    case_id: str
    searches: list[DemoSearch]
    owner: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)


def _builtin_models() -> tuple[Callable, Callable, Any]:
    from sightline.search.commands import builtin_photo_models

    return builtin_photo_models()


def _audit(audit_dir: Path, query: SearchQuery, photos: Sequence[bytes], description: Any) -> None:
    from sightline.search.commands import audit_search

    audit_search(audit_dir, DEMO_PRINCIPAL, query, list(photos), description, via="demo")


def run_demo_searches(  # noqa: PLR0913 (keyword-only options, each with a default)
    site_dir: Path,
    site: SiteConfig,
    person: DemoPerson,
    *,
    store_root: str | Path | None = None,
    audit_dir: Path | None = None,
    case_id: str = "demo",
    max_candidates: int = 10,
    embed: Callable | None = None,
    detect: Callable | None = None,
    adapter: Any = None,
) -> DemoSearches:
    """A photo search (``person.photo``) and a description search
    (:func:`description_for`) over the site's store for the whole simulated window, each
    audited first (principal :data:`DEMO_PRINCIPAL`, role ``analyst``) in ``audit_dir``
    (default: the site's audit folder). Without ``embed`` the built-in embedder,
    detector and photo adapter are used, as ``sightline search`` uses them; an injected
    ``embed`` is used as given (``detect`` and ``adapter`` may then be None)."""
    from sightline.evaluation.search import identity_people
    from sightline.search import search_store
    from sightline.security.commands import security_paths

    site_dir = Path(site_dir)
    store = str(store_root if store_root is not None else site.storage.root)
    audit_dir = audit_dir if audit_dir is not None else security_paths(site)[1]
    timings: dict[str, float] = {}
    if embed is None:
        t0 = time.perf_counter()
        embed, detect, adapter = _builtin_models()
        timings["load models"] = time.perf_counter() - t0
    frames = pl.read_parquet(site_dir / "gt" / "frames.parquet")
    window = {"start": frames["ts"].min(), "end": frames["ts"].max()}
    base = {"case_id": case_id, "requested_by": DEMO_PRINCIPAL, **window}
    base["max_candidates"] = max_candidates
    photo = person.photo.read_bytes()
    description = description_for(person)
    asks = [
        (
            "photo",
            f"reference photo {person.photo.name}",
            SearchQuery(
                **base, reason=f"demo: find p{person.person_id:04d} by photo", photos=[photo]
            ),
            [photo],
            None,
        ),
        (
            "description",
            _describe_query(description),
            SearchQuery(
                **base,
                reason=f"demo: find p{person.person_id:04d} by description",
                description=description,
            ),
            [],
            description.model_dump(exclude_none=True),
        ),
    ]
    searches = []
    for kind, asked, query, photos, described in asks:
        t0 = time.perf_counter()
        _audit(audit_dir, query, photos, described)
        result = search_store(store, query, embed, detect=detect, adapter=adapter)
        seconds = time.perf_counter() - t0
        timings[f"{kind} search"] = seconds
        searches.append(DemoSearch(kind, asked, result, seconds))
    gt = pl.read_parquet(site_dir / "gt" / "boxes.parquet")
    owners = identity_people(store, site, gt)
    owner = {str(k): int(p) for k, p in zip(owners["key"], owners["person_id"], strict=True)}
    return DemoSearches(person, case_id, searches, owner, timings)


def _describe_query(d: Description) -> str:
    parts = [f"top {d.upper_colour}", f"bottom {d.lower_colour}"]
    if d.height_min_m is not None and d.height_max_m is not None:
        parts.append(f"{d.height_min_m:.2f}-{d.height_max_m:.2f} m")
    if d.child is not None:
        parts.append("child" if d.child else "adult")
    for item in d.accessories:
        parts.append(item if getattr(d, item) else f"no {item}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- judging


def candidate_rows(result: SearchResult, owner: dict[str, int], person_id: int) -> list[dict]:
    """One row per candidate: rank, key, global id, confidence, good match, cameras,
    first and last seen, its true person (None if no ground-truth person covers its
    frames) and ``is_target`` (that true person is ``person_id``)."""
    rows = []
    for c in result.candidates:
        truth = owner.get(c.key)
        rows.append(
            {
                "rank": c.rank,
                "key": c.key,
                "global_id": c.global_id,
                "confidence": c.confidence,
                "good_match": c.good_match,
                "cameras": c.cameras,
                "first_seen": c.first_seen,
                "last_seen": c.last_seen,
                "true_person": truth,
                "is_target": truth == person_id,
            }
        )
    return rows


def _intervals(ts: Sequence[datetime], gap_s: float = _GAP_S) -> list[tuple[datetime, datetime]]:
    """Sorted times as ``(start, end)`` runs, split where they are more than ``gap_s`` apart."""
    out: list[tuple[datetime, datetime]] = []
    for t in sorted(ts):
        if out and (t - out[-1][1]).total_seconds() <= gap_s:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


def _merge(spans: Sequence[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(spans):
        if out and (lo - out[-1][1]).total_seconds() <= _GAP_S:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return out


def route_vs_truth(
    candidate: Candidate, gt_boxes: pl.DataFrame, person_id: int
) -> list[dict[str, Any]]:
    """Per camera (in order of first time, ours or the truth's): when the candidate's
    route has it (``seen``: merged sighting spans), when ``person_id`` was really on the
    camera (``truth``: runs of frames visible >= :data:`VISIBLE`), and ``covered``: the
    share of those true frames inside a span we saw (None where the truth has none)."""
    route: list[Sighting] = list(candidate.route or candidate.sightings)
    seen: dict[str, list[tuple[datetime, datetime]]] = {}
    for s in route:
        seen.setdefault(s.camera_id, []).append((s.t_start, s.t_end))
    truth_rows = _visible(gt_boxes).filter(pl.col("person_id") == person_id)
    truth_ts = {
        str(cam): part.sort("ts")["ts"].to_list()
        for (cam,), part in truth_rows.partition_by("camera_id", as_dict=True).items()
    }
    rows = []
    for cam in set(seen) | set(truth_ts):
        ours = _merge(seen.get(cam, []))
        true_ts = truth_ts.get(cam, [])
        inside = sum(any(lo <= t <= hi for lo, hi in ours) for t in true_ts)
        rows.append(
            {
                "camera_id": cam,
                "seen": ours,
                "truth": _intervals(true_ts),
                "covered": inside / len(true_ts) if true_ts else None,
            }
        )
    first = datetime.max.replace(tzinfo=UTC)
    rows.sort(key=lambda r: (min([*r["seen"], *r["truth"]], default=(first,))[0], r["camera_id"]))
    return rows


def crowd_alerts_vs_events(store_root: str | Path, site_dir: Path) -> dict[str, Any]:
    """The store's crowd alerts next to the simulator's scheduled crowd events
    (``gt/events.parquet``): each event with the alerts of its zone that overlap it
    (``reported``), and the alerts that match no event (``unexpected``)."""
    from sightline.density.queries import density_alerts

    alerts = density_alerts(str(store_root)).to_dicts()
    path = Path(site_dir) / "gt" / "events.parquet"
    events = pl.read_parquet(path).to_dicts() if path.is_file() else []
    matched: set[str] = set()
    out = []
    for event in events:
        hits = [
            a
            for a in alerts
            if a["zone_id"] == event["zone_id"]
            and a["t_start"] <= event["t_end"]
            and (a["t_end"] is None or a["t_end"] >= event["t_start"])
        ]
        matched.update(a["alert_id"] for a in hits)
        out.append({**event, "alerts": hits, "reported": bool(hits)})
    return {
        "events": out,
        "alerts": alerts,
        "unexpected": [a for a in alerts if a["alert_id"] not in matched],
    }


# --------------------------------------------------------------------------- printing


def _hms(t: datetime | None) -> str:
    return "-" if t is None else f"{t:%H:%M:%S}"


def _spans(spans: Sequence[tuple[datetime, datetime]]) -> str:
    return ", ".join(f"{_hms(lo)}-{_hms(hi)}" for lo, hi in spans) or "-"


def _truth_mark(row: dict[str, Any]) -> str:
    if row["true_person"] is None:
        return "no true person"
    mark = "YES" if row["is_target"] else "no"
    return f"{mark} (p{row['true_person']:04d})"


def _candidate_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    kw = max([9, *(len(r["key"]) for r in rows)])
    cw = max([7, *(len(",".join(r["cameras"])) for r in rows)])
    lines = [
        f"  {'rank':>4}  {'global id':<{kw}} {'conf':>5} {'good':>4}  {'cameras':<{cw}}  "
        f"{'first':>8} {'last':>8}  true person?"
    ]
    for r in rows:
        lines.append(
            f"  {r['rank']:>4}  {r['key']:<{kw}} {r['confidence']:>5.2f} "
            f"{'yes' if r['good_match'] else 'no':>4}  {','.join(r['cameras']):<{cw}}  "
            f"{_hms(r['first_seen']):>8} {_hms(r['last_seen']):>8}  {_truth_mark(r)}"
        )
    return lines


def _route_lines(route: Sequence[dict[str, Any]]) -> list[str]:
    lines = [f"  {'camera':<8} {'we saw the candidate':<32} {'the person was really there':<32}"]
    for r in route:
        covered = "" if r["covered"] is None else f"  ({r['covered']:.0%} of it seen)"
        lines.append(f"  {r['camera_id']:<8} {_spans(r['seen']):<32} {_spans(r['truth'])}{covered}")
    return lines


def _alert_lines(alerts: dict[str, Any]) -> list[str]:
    lines = []
    for e in alerts["events"]:
        where = (
            f"the crowd event in {e['zone_id']} ({_hms(e['t_start'])}-{_hms(e['t_end'])}, "
            f"{e['n_people']} people)"
        )
        if e["reported"]:
            a = e["alerts"][0]
            lines.append(
                f"crowd alert REPORTED for {where}: alert {_hms(a['t_start'])}-"
                f"{_hms(a['t_end']) if a['t_end'] else 'open'}, peak {a['peak_count']:.0f} "
                f"people ({a['peak_density']:.2f}/m2 > {a['alert_density']:.2f})"
            )
        else:
            lines.append(f"crowd alert NOT reported for {where}")
    for a in alerts["unexpected"]:
        lines.append(
            f"alert without a scheduled crowd event: {a['zone_id']} {_hms(a['t_start'])}-"
            f"{_hms(a['t_end'])}, peak {a['peak_count']:.0f} people"
        )
    if not alerts["events"] and not alerts["alerts"]:
        lines.append("no crowd event was scheduled and no crowd alert was reported")
    return lines


def _top_line(search: DemoSearch, rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return f"  {search.kind} search: no candidates"
    rank = next((r["rank"] for r in rows if r["is_target"]), None)
    verdict = (
        "the true person ranked FIRST"
        if rank == 1
        else f"the true person ranked {rank}"
        if rank is not None
        else f"the true person is not among the {len(rows)} candidates"
    )
    match = "no good match" if search.result.no_good_match else "good match"
    return f"  -> {verdict}; the search says {match} (threshold {search.result.min_confidence})"


def format_search_report(
    searches: DemoSearches,
    gt_boxes: pl.DataFrame,
    alerts: dict[str, Any] | None = None,
) -> str:
    """The searches as the demo prints them: the person sought, each search's ranked
    candidates marked against the ground truth, the photo search's top candidate's route
    next to the truth, and whether the crowd event raised an alert."""
    person = searches.person
    lines = [
        f"looking for {person.describe()}",
        "  (picked from the ground truth alone: most cameras, then longest visible)",
        f"  case {searches.case_id}, audited as '{DEMO_PRINCIPAL}'",
    ]
    for search in searches.searches:
        rows = candidate_rows(search.result, searches.owner, person.person_id)
        lines += [
            "",
            f"{search.kind} search ({search.asked}): {len(rows)} candidates "
            f"in {search.seconds:.2f} s",
            *_candidate_lines(rows),
            _top_line(search, rows),
        ]
    top = _top_candidate(searches)
    if top is not None:
        truth = searches.owner.get(top.key)
        whose = f"p{truth:04d}" if truth is not None else "no true person"
        lines += [
            "",
            f"route of the photo search's top candidate {top.key} (truly {whose}) "
            f"vs where p{person.person_id:04d} really was (>= {VISIBLE:.0%} visible):",
            *_route_lines(route_vs_truth(top, gt_boxes, person.person_id)),
        ]
    if alerts is not None:
        lines += ["", *_alert_lines(alerts)]
    return "\n".join(lines)


def _top_candidate(searches: DemoSearches) -> Candidate | None:
    for search in searches.searches:
        if search.result.candidates:
            return search.result.candidates[0]
    return None


def format_timings(timings: dict[str, float]) -> str:
    """``timings`` (step -> seconds) as the demo's closing lines."""
    width = max((len(k) for k in timings), default=0)
    lines = ["timings:"]
    lines += [f"  {step:<{width}}  {seconds:7.2f} s" for step, seconds in timings.items()]
    lines.append(f"  {'total':<{width}}  {sum(timings.values()):7.2f} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the report


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return out


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _candidate_cells(r: dict[str, Any]) -> list[str]:
    return [
        str(r["rank"]),
        r["key"],
        f"{r['confidence']:.2f}",
        "yes" if r["good_match"] else "no",
        ", ".join(r["cameras"]),
        _hms(r["first_seen"]),
        _hms(r["last_seen"]),
        _truth_mark(r),
    ]


_CANDIDATE_HEADER = [
    "rank", "global id", "confidence", "good match", "cameras", "first seen", "last seen",
    "true person?",
]  # fmt: skip
_ROUTE_HEADER = ["camera", "we saw the candidate", "the person was really there", "seen"]
_ZONE_HEADER = ["zone", "mean people", "peak people", "peak /m2", "coverage"]


def _route_cells(r: dict[str, Any]) -> list[str]:
    covered = "-" if r["covered"] is None else f"{r['covered']:.0%}"
    return [r["camera_id"], _spans(r["seen"]), _spans(r["truth"]), covered]


def _zone_cells(z: dict[str, Any]) -> list[str]:
    return [
        z["zone_id"],
        f"{z['mean_count']:.1f}",
        f"{z['peak_count']}",
        f"{z['peak_density_per_m2']:.2f}",
        f"{z['min_coverage']:.2f}",
    ]


def _zone_rows(store: str) -> list[dict[str, Any]]:
    from sightline.density.queries import zone_summary

    start, end = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    return zone_summary(store, start, end).to_dicts()


def _heatmap_png(store: str, site: SiteConfig, site_dir: Path) -> bytes:
    from sightline.density.heatmap import render_site_png, site_occupancy
    from sightline.density.queries import ground_points

    frames = pl.read_parquet(Path(site_dir) / "gt" / "frames.parquet")
    start, end = frames["ts"].min(), frames["ts"].max()
    seconds = max((end - start).total_seconds(), 1.0)
    return render_site_png(site_occupancy(ground_points(store, start, end), site, seconds), site)


def _search_section(
    search: DemoSearch,
    searches: DemoSearches,
    thumbs: dict[str, bytes],
    thumbs_dir: Path,
) -> tuple[list[str], list[str]]:
    """A search's candidates with thumbnails, as Markdown lines and HTML parts."""
    rows = candidate_rows(search.result, searches.owner, searches.person.person_id)
    md_rows, html_rows = [], []
    for r in rows:
        jpeg = thumbs.get(r["key"])
        cells = _candidate_cells(r)
        if jpeg is None:
            md_rows.append(["-", *cells])
            html_rows.append(["-", *map(html.escape, cells)])
            continue
        name = f"{search.kind}-rank{r['rank']:02d}.jpg"
        (thumbs_dir / name).write_bytes(jpeg)
        md_rows.append([f"![rank {r['rank']}](thumbnails/{name})", *cells])
        img = f'<img alt="rank {r["rank"]}" src="{_data_uri(jpeg, "image/jpeg")}">'
        html_rows.append([img, *map(html.escape, cells)])
    heading = f"{search.kind.capitalize()} search ({search.asked})"
    verdict = _top_line(search, rows).strip().removeprefix("-> ")
    md = ["", f"## {heading}", "", f"{len(rows)} candidates; {verdict}.", ""]
    md += _md_table(["thumbnail", *_CANDIDATE_HEADER], md_rows)
    body = [
        f"<h2>{html.escape(heading)}</h2>",
        f"<p>{len(rows)} candidates; {html.escape(verdict)}.</p>",
        _html_table(["thumbnail", *_CANDIDATE_HEADER], html_rows),
    ]
    return md, body


def write_report(
    out_dir: Path,
    site_dir: Path,
    site: SiteConfig,
    searches: DemoSearches,
    *,
    store_root: str | Path | None = None,
    detections: FrameDetections | None = None,
    alerts: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, a self-contained ``report.html`` (images inlined),
    ``heatmap.png`` and ``thumbnails/<search>-rankNN.jpg`` into ``out_dir``: the person
    sought, each search's candidates (marked against the ground truth) with thumbnails
    (heads of everyone but the candidate blurred with the frames' ``detections``, see
    :mod:`sightline.search.thumbnails`; withheld when those are unknown), the top
    candidate's route vs the truth, zone densities, crowd alerts vs the scheduled events
    and the site heatmap. Returns the paths written, by name."""
    out_dir, site_dir = Path(out_dir), Path(site_dir)
    store = str(store_root if store_root is not None else site.storage.root)
    gt = pl.read_parquet(site_dir / "gt" / "boxes.parquet")
    alerts = alerts if alerts is not None else crowd_alerts_vs_events(store, site_dir)
    thumbs_dir = out_dir / "thumbnails"
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    heatmap = _heatmap_png(store, site, site_dir)
    (out_dir / "heatmap.png").write_bytes(heatmap)
    person = searches.person
    title = f"Sightline demo: search for p{person.person_id:04d}"
    md = [f"# {title}", "", f"Looking for {person.describe()}.", ""]
    md += [
        "Picked from the ground truth alone (most cameras, then longest visible). "
        f"Case `{searches.case_id}`, searches audited as `{DEMO_PRINCIPAL}`.",
    ]
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Looking for {html.escape(person.describe())}.</p>",
    ]
    body.append(
        f"<p>Picked from the ground truth alone (most cameras, then longest visible). "
        f"Case <code>{html.escape(searches.case_id)}</code>, searches audited as "
        f"<code>{DEMO_PRINCIPAL}</code>.</p>"
    )
    if person.photo.is_file():
        body.append(
            f'<p>Reference photo:<br><img class="ref" alt="reference photo" '
            f'src="{_data_uri(person.photo.read_bytes(), "image/png")}"></p>'
        )
    every = {c.key: c for search in searches.searches for c in search.result.candidates}
    thumbs = candidate_thumbnails(store, site, list(every.values()), detections)
    for search in searches.searches:
        md_part, html_part = _search_section(search, searches, thumbs, thumbs_dir)
        md += md_part
        body += html_part
    top = _top_candidate(searches)
    if top is not None:
        route = [_route_cells(r) for r in route_vs_truth(top, gt, person.person_id)]
        heading = f"Route of the top candidate {top.key}"
        note = (
            f"Per camera: when we saw the candidate vs when p{person.person_id:04d} was "
            f"really there (>= {VISIBLE:.0%} visible)."
        )
        md += ["", f"## {heading}", "", note, "", *_md_table(_ROUTE_HEADER, route)]
        body += [
            f"<h2>{html.escape(heading)}</h2>",
            f"<p>{html.escape(note)}</p>",
            _html_table(_ROUTE_HEADER, [[html.escape(c) for c in r] for r in route]),
        ]
    zones = [_zone_cells(z) for z in _zone_rows(store)]
    alert_lines = _alert_lines(alerts)
    md += ["", "## Crowd density", "", *_md_table(_ZONE_HEADER, zones), ""]
    md += [f"- {line}" for line in alert_lines]
    md += ["", "![site heatmap](heatmap.png)", ""]
    body += [
        "<h2>Crowd density</h2>",
        _html_table(_ZONE_HEADER, [[html.escape(c) for c in z] for z in zones]),
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in alert_lines) + "</ul>",
        f'<p><img alt="site heatmap" src="{_data_uri(heatmap, "image/png")}"></p>',
    ]
    paths = {
        "report.md": out_dir / "report.md",
        "report.html": out_dir / "report.html",
        "heatmap.png": out_dir / "heatmap.png",
    }
    paths["report.md"].write_text("\n".join(md))
    paths["report.html"].write_text(_HTML.format(title=html.escape(title), body="\n".join(body)))
    (out_dir / "report.json").write_text(
        json.dumps({s.kind: s.result.model_dump(mode="json") for s in searches.searches})
    )
    paths["report.json"] = out_dir / "report.json"
    return paths


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: middle; }}
th {{ background: #f0f0f0; }}
td img {{ height: 96px; }}
img.ref {{ height: 160px; }}
</style></head>
<body>
{body}
</body></html>
"""
