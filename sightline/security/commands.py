"""``sightline keys ...``, ``sightline audit ...`` and ``sightline retention purge``.

Where the files are: ``--keys FILE`` / ``--audit DIR`` / ``--store DIR`` name them; or
``--config site.yaml`` derives them from the site (:func:`security_paths`): the key file
is ``<storage.root>/_security/<security.api_keys_file>`` (an absolute ``api_keys_file``
is used as is) and the audit log ``<storage.root>/_security/audit/``. The default
retention periods come from the config's ``security`` section. Every command prints JSON
on stdout.
"""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import date
from pathlib import Path
from typing import Any

from sightline.config import SiteConfig, load_site_config
from sightline.security.keys import ROLES

__all__ = ["SECURITY_FOLDER", "add_security_commands", "security_paths"]

SECURITY_FOLDER = "_security"
"""Folder under the store root holding the key file and the audit log by default."""


def security_paths(site: SiteConfig) -> tuple[Path, Path]:
    """``(key file, audit folder)`` of a site (see the module docstring). A store on a URL
    has no local folder for them: a ``ValueError`` asks for explicit paths."""
    root = str(site.storage.root)
    if "://" in root and not root.startswith("file://"):
        raise ValueError(
            f"storage.root {root} is a URL; keys and the audit log must be local files: "
            "pass --keys FILE / --audit DIR"
        )
    folder = Path(root.removeprefix("file://")) / SECURITY_FOLDER
    keys = Path(site.security.api_keys_file)
    return (keys if keys.is_absolute() else folder / keys), folder / "audit"


def _site(args: argparse.Namespace) -> SiteConfig | None:
    return load_site_config(args.config) if args.config is not None else None


def _path(args: argparse.Namespace, name: str) -> Path:
    given = getattr(args, name)
    if given is not None:
        return Path(given)
    site = _site(args)
    if site is None:
        raise FileNotFoundError(f"name the file with --{name} or a site config with --config")
    keys, audit = security_paths(site)
    return keys if name == "keys" else audit


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment (a bare container)
        return "cli"


# ---------------------------------------------------------------------- keys


def _cmd_keys_create(args: argparse.Namespace) -> int:
    from sightline.security.keys import KeyStore

    store = KeyStore(_path(args, "keys"), create=True)
    key_id, token = store.create(args.principal, args.role)
    _print(
        {
            "key_id": key_id,
            "principal": args.principal,
            "role": args.role,
            "key": token,
            "note": "the key is shown only now; it is stored hashed",
        }
    )
    return 0


def _cmd_keys_list(args: argparse.Namespace) -> int:
    from sightline.security.keys import KeyStore

    keys = KeyStore(_path(args, "keys")).list(include_revoked=args.all)
    _print([k.to_dict() for k in keys])
    return 0


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    from sightline.security.keys import KeyStore

    store = KeyStore(_path(args, "keys"))
    try:
        info = store.revoke(args.key_id)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    _print(info.to_dict())
    return 0


# ---------------------------------------------------------------------- audit


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from sightline.security.audit import AuditLog

    folder = _path(args, "audit")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no audit folder")
    report = AuditLog(folder).verify()
    _print(report.to_dict())
    return 0 if report.ok else 1


def _before(args: argparse.Namespace, site_days: str) -> date:
    """The cutoff from ``--before``, ``--days`` or the site config's retention."""
    from sightline.security.retention import cutoff_date

    if args.before is not None:
        return args.before
    if args.days is not None:
        return cutoff_date(args.days)
    site = _site(args)
    if site is None:
        raise ValueError("give --before DATE, --days N, or --config for the site's retention")
    return cutoff_date(getattr(site.security, site_days))


def _cmd_audit_purge(args: argparse.Namespace) -> int:
    from sightline.security.audit import AuditLog

    before = _before(args, "audit_retention_days")
    result = AuditLog(_path(args, "audit")).purge_before(
        before, principal=args.principal or _operator(), reason=args.reason
    )
    _print({"before": before.isoformat(), **result})
    return 0


# ---------------------------------------------------------------------- retention


def _cmd_retention_purge(args: argparse.Namespace) -> int:
    from sightline.security.retention import purge_store

    if args.store is not None:
        root = str(args.store)
    else:
        site = _site(args)
        if site is None:
            raise FileNotFoundError("name the store with --store DIR or a site with --config")
        root = str(site.storage.root)
    report = purge_store(root, _before(args, "retention_days"), dry_run=args.dry_run)
    _print(report.to_dict())
    return 0


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days >= 1")
    return value


def _cutoff_options(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--before", type=_iso_date, default=None, help=f"purge {what} before")
    group.add_argument("--days", type=_positive, default=None, help=f"keep {what} of N days")


def _add_keys(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="API keys: create, list, revoke")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--keys", type=Path, default=None, help="key file (JSON)")
    where.add_argument("--config", type=Path, default=None, help="site config (its key file)")
    create = ksub.add_parser("create", parents=[where], help="new key; prints it once")
    create.add_argument("--principal", required=True, help="person or service name")
    create.add_argument("--role", required=True, choices=sorted(ROLES))
    create.set_defaults(func=_cmd_keys_create)
    listing = ksub.add_parser("list", parents=[where], help="keys without secrets")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(func=_cmd_keys_list)
    revoke = ksub.add_parser("revoke", parents=[where], help="revoke a key by its id")
    revoke.add_argument("key_id", help="the key id (16 hex digits)")
    revoke.set_defaults(func=_cmd_keys_revoke)


def _add_audit(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="the hash-chained audit log: verify, purge")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--audit", type=Path, default=None, help="audit log folder")
    where.add_argument("--config", type=Path, default=None, help="site config (its log)")
    verify = asub.add_parser(
        "verify", parents=[where], help="check the chain; exit 1 if it was tampered with"
    )
    verify.set_defaults(func=_cmd_audit_verify)
    purge = asub.add_parser("purge", parents=[where], help="delete old day files (checkpointed)")
    _cutoff_options(purge, "day files")
    purge.add_argument("--principal", default=None, help="who purges (default cli:<user>)")
    purge.add_argument("--reason", default="audit retention", help="recorded in the log")
    purge.set_defaults(func=_cmd_audit_purge)


def add_security_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``sightline keys create|list|revoke``, ``sightline audit verify|purge``
    and ``sightline retention purge``."""
    _add_keys(sub)
    _add_audit(sub)
    retention = sub.add_parser("retention", help="data retention of the store")
    rsub = retention.add_subparsers(dest="retention_command", required=True)
    purge = rsub.add_parser(
        "purge", help="delete store partitions (and their thumbnails) older than N days"
    )
    purge.add_argument("--store", type=Path, default=None, help="store root folder")
    purge.add_argument("--config", type=Path, default=None, help="site config (its store)")
    _cutoff_options(purge, "data")
    purge.add_argument("--dry-run", action="store_true", help="report only, delete nothing")
    purge.set_defaults(func=_cmd_retention_purge)
