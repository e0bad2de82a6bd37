"""``sightline search``: a missing-person search from the command line, over a site's store.

It runs the same search as ``POST /searches`` (built-in detector and embedder, the photo
adapter, :func:`~sightline.search.engine.search_store`) on the store named by the site
config, writes the same audit entry (principal ``cli:<user>``, role ``analyst``) to the
site's audit log, and prints the result as JSON. A case id and a reason are required,
as for every search.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
from pathlib import Path
from typing import Any

from sightline.config import load_site_config

__all__ = ["add_search_commands", "audit_search", "builtin_photo_models"]


def _description(args: argparse.Namespace) -> dict[str, Any] | None:
    fields = {
        "upper_colour": args.upper,
        "lower_colour": args.lower,
        "height_min_m": args.height_min,
        "height_max_m": args.height_max,
        "child": args.child,
        "hat": args.hat,
        "bag": args.bag,
    }
    given = {k: v for k, v in fields.items() if v is not None}
    return given or None


def builtin_photo_models() -> tuple[Any, Any, Any]:
    """``(embed, detect, adapter)`` for photo queries without Ray: the built-in embedder
    and detector on the CPU, and the built-in photo adapter."""
    from sightline.config import BuiltinDetectorConfig, BuiltinEmbedderConfig
    from sightline.models.registry import build_detector, build_embedder
    from sightline.search.photo_adapter import PhotoAdapter

    embed = build_embedder(BuiltinEmbedderConfig(), prefer_gpu=False).embed
    detect = build_detector(BuiltinDetectorConfig(), prefer_gpu=False).detect
    return embed, detect, PhotoAdapter.builtin()


def audit_search(
    audit_dir: str | Path,
    principal: str,
    query: Any,
    photos: list[bytes] | tuple[bytes, ...],
    description: Any,
    *,
    via: str,
) -> None:
    """Append the ``search.create`` entry of a search run outside the API (photos as
    SHA-256 hashes, never bytes), as role ``analyst``."""
    from sightline.security import AuditLog

    AuditLog(audit_dir).append(
        principal,
        "analyst",
        "search.create",
        case_id=query.case_id,
        reason=query.reason,
        parameters={
            "start": query.start.isoformat(),
            "end": query.end.isoformat(),
            "photos_sha256": [hashlib.sha256(p).hexdigest() for p in photos],
            "description": description,
            "cameras": query.cameras,
            "via": via,
        },
    )


def _cmd_search(args: argparse.Namespace) -> int:
    from sightline.search import SearchQuery, search_store
    from sightline.security import security_paths

    site = load_site_config(args.config)
    photos = [Path(p).read_bytes() for p in args.photo]
    data: dict[str, Any] = {
        "case_id": args.case_id,
        "reason": args.reason,
        "requested_by": f"cli:{getpass.getuser()}",
        "start": args.start,
        "end": args.end,
        "photos": photos,
        "description": _description(args),
        "cameras": args.cameras,
        "max_candidates": args.max_candidates,
    }
    if args.min_confidence is not None:
        data["min_confidence"] = args.min_confidence
    query = SearchQuery.parse({k: v for k, v in data.items() if v is not None})
    embed = detect = adapter = None
    if photos:
        embed, detect, adapter = builtin_photo_models()
    audit_dir = args.audit if args.audit is not None else security_paths(site)[1]
    audit_search(audit_dir, str(query.requested_by), query, photos, data["description"], via="cli")
    result = search_store(str(site.storage.root), query, embed, detect=detect, adapter=adapter)
    print(json.dumps(result.model_dump(mode="json"), indent=2))
    return 0


def add_search_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``sightline search``."""
    search = sub.add_parser(
        "search", help="search a site's store for a person by photo and/or description"
    )
    search.add_argument("--config", type=Path, required=True, help="site config (its store)")
    search.add_argument("--case-id", required=True, help="the case the search serves")
    search.add_argument("--reason", required=True, help="why the search is run (audited)")
    search.add_argument("--start", required=True, help="window start: ISO time or epoch s")
    search.add_argument("--end", required=True, help="window end: ISO time or epoch s")
    search.add_argument("--photo", nargs="*", default=[], help="reference photo file(s)")
    search.add_argument("--upper", default=None, help="top colour (palette name)")
    search.add_argument("--lower", default=None, help="trousers colour (palette name)")
    search.add_argument("--height-min", type=float, default=None, help="metres")
    search.add_argument("--height-max", type=float, default=None, help="metres")
    child = search.add_mutually_exclusive_group()
    child.add_argument("--child", dest="child", action="store_true", default=None)
    child.add_argument("--adult", dest="child", action="store_false")
    for item, yes, no in (
        ("hat", "wears a hat or cap", "bare-headed"),
        ("bag", "carries a bag", "carries no bag"),
    ):
        group = search.add_mutually_exclusive_group()
        group.add_argument(f"--{item}", dest=item, action="store_true", default=None, help=yes)
        group.add_argument(f"--no-{item}", dest=item, action="store_false", help=no)
    search.add_argument("--cameras", nargs="+", default=None)
    search.add_argument("--max-candidates", type=int, default=20)
    search.add_argument("--min-confidence", type=float, default=None)
    search.add_argument("--audit", type=Path, default=None, help="audit folder (default: site's)")
    search.set_defaults(func=_cmd_search)
