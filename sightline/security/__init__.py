"""Security: API keys and roles, the hash-chained audit log, and data retention.

:mod:`~sightline.security.keys` authenticates ``sl_<key_id>_<secret>`` API keys (stored
hashed) and checks roles; :mod:`~sightline.security.audit` writes and verifies the
tamper-evident audit log; :mod:`~sightline.security.retention` purges old store
partitions and thumbnails; :mod:`~sightline.security.commands` is the CLI. No Ray here.
See ``docs/security.md``.
"""

from sightline.security.audit import AuditError, AuditLog, BadEntry, VerifyReport
from sightline.security.commands import security_paths
from sightline.security.keys import (
    ROLES,
    AuthenticationError,
    KeyInfo,
    KeyStore,
    KeyStoreError,
    PermissionDenied,
    Principal,
    authorize,
)
from sightline.security.retention import RetentionReport, cutoff_date, purge_store

__all__ = [
    "ROLES",
    "AuditError",
    "AuditLog",
    "AuthenticationError",
    "BadEntry",
    "KeyInfo",
    "KeyStore",
    "KeyStoreError",
    "PermissionDenied",
    "Principal",
    "RetentionReport",
    "VerifyReport",
    "authorize",
    "cutoff_date",
    "purge_store",
    "security_paths",
]
