"""The audit log: appending, the hash chain, tamper detection, restarts, concurrency, purge."""

from __future__ import annotations

import argparse
import json
import multiprocessing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from sightline.security import commands
from sightline.security.audit import GENESIS, AuditError, AuditLog, entry_hash

DAY0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


class Clock:
    """A settable clock: each reading advances one minute."""

    def __init__(self, start: datetime = DAY0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def _search(log: AuditLog, n: int = 1) -> list[dict]:
    return [
        log.append(
            "alice",
            "analyst",
            "search.create",
            case_id="CASE-1",
            reason="missing child",
            parameters={"description": "red top", "n": i, "since": DAY0},
        )
        for i in range(n)
    ]


def _three_days(folder: Path, per_day: int = 3) -> AuditLog:
    """A log with ``per_day`` entries on each of 1, 2 and 3 May."""
    clock = Clock()
    log = AuditLog(folder, clock=clock)
    for day in range(3):
        clock.now = DAY0 + timedelta(days=day)
        _search(log, per_day)
    return log


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_append_and_verify(tmp_path):
    log = AuditLog(tmp_path, clock=Clock())
    first, second = _search(log, 2)
    assert first["seq"] == 0 and first["prev_hash"] == GENESIS
    assert second["prev_hash"] == first["hash"] == entry_hash(first)
    assert first["parameters"]["since"] == "2024-05-01T09:00:00.000000Z"
    entry = log.append("bob", "data", "tracks.read", parameters={"cameras": ["cam1"]})
    assert entry["case_id"] is None
    report = log.verify()
    assert report.ok and report.entries == 3 and report.first_bad is None
    assert (report.head_seq, report.head_hash) == (2, entry["hash"])
    assert [e["seq"] for e in log.entries()] == [0, 1, 2]
    written = json.loads(_lines(tmp_path / "audit-2024-05-01.jsonl")[0])
    assert list(written) == [
        "seq",
        "ts",
        "principal",
        "role",
        "action",
        "case_id",
        "reason",
        "parameters",
        "prev_hash",
        "hash",
    ]


def test_empty_log_verifies(tmp_path):
    report = AuditLog(tmp_path).verify()
    assert report.ok and report.entries == 0 and report.head_hash == GENESIS


@pytest.mark.parametrize(
    ("action", "fields", "missing"),
    [
        ("search.create", {"reason": "r"}, "case_id"),
        ("search.create", {"case_id": "C1"}, "reason"),
        ("search.photo", {"case_id": "  ", "reason": "r"}, "case_id"),
        ("search", {"case_id": "C1", "reason": None}, "reason"),
    ],
)
def test_searches_need_case_id_and_reason(tmp_path, action, fields, missing):
    log = AuditLog(tmp_path)
    with pytest.raises(ValueError, match=f"^{missing} is required"):
        log.append("alice", "analyst", action, **fields)
    assert list(log.entries()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "Search Create"}, "action 'Search Create'"),
        ({"action": "audit.purge"}, "reserved"),
        ({"principal": ""}, "principal is required"),
        ({"parameters": {"x": object()}}, "parameters are not JSON"),
        ({"parameters": {"x": float("nan")}}, "parameters are not JSON"),
        ({"parameters": {"x": "a" * 70_000}}, "bytes"),
        ({"reason": "r" * 2001}, "reason is 2001 characters"),
    ],
)
def test_bad_entries_are_refused(tmp_path, kwargs, message):
    args = {"principal": "bob", "role": "data", "action": "tracks.read", **kwargs}
    with pytest.raises(ValueError, match=message):
        AuditLog(tmp_path).append(args.pop("principal"), args.pop("role"), **args)


def _edit_field(folder: Path) -> None:
    path = folder / "audit-2024-05-02.jsonl"
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["case_id"] = "CASE-2"
    lines[1] = json.dumps(entry) + "\n"
    path.write_text("".join(lines))


def _edit_and_rehash(folder: Path) -> None:
    path = folder / "audit-2024-05-02.jsonl"
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["principal"] = "mallory"
    entry["hash"] = entry_hash(entry)
    lines[1] = json.dumps(entry) + "\n"
    path.write_text("".join(lines))


def _delete_line(folder: Path) -> None:
    path = folder / "audit-2024-05-02.jsonl"
    lines = _lines(path)
    del lines[1]
    path.write_text("".join(lines))


def _reorder(folder: Path) -> None:
    path = folder / "audit-2024-05-02.jsonl"
    lines = _lines(path)
    lines[0], lines[1] = lines[1], lines[0]
    path.write_text("".join(lines))


def _truncate(folder: Path) -> None:
    path = folder / "audit-2024-05-03.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[:-20])


def _remove_middle_file(folder: Path) -> None:
    (folder / "audit-2024-05-02.jsonl").unlink()


def _remove_first_file(folder: Path) -> None:
    (folder / "audit-2024-05-01.jsonl").unlink()


def _garbage_line(folder: Path) -> None:
    path = folder / "audit-2024-05-02.jsonl"
    lines = _lines(path)
    lines.insert(1, "{}\n")
    path.write_text("".join(lines))


TAMPERING = [
    # (tamper, kind, file, line, seq)
    (_edit_field, "edited", "audit-2024-05-02.jsonl", 2, 4),
    (_edit_and_rehash, "edited", "audit-2024-05-02.jsonl", 3, 5),
    (_delete_line, "missing", "audit-2024-05-02.jsonl", 2, 5),
    (_reorder, "reordered", "audit-2024-05-02.jsonl", 1, 4),
    (_truncate, "truncated", "audit-2024-05-03.jsonl", 3, None),
    (_remove_middle_file, "missing", "audit-2024-05-03.jsonl", 1, 6),
    (_remove_first_file, "missing", "audit-2024-05-02.jsonl", 1, 3),
    (_garbage_line, "malformed", "audit-2024-05-02.jsonl", 2, None),
]


@pytest.mark.parametrize(("tamper", "kind", "file", "line", "seq"), TAMPERING)
def test_tampering_is_detected(tmp_path, tamper, kind, file, line, seq):
    log = _three_days(tmp_path)
    assert log.verify().ok
    tamper(tmp_path)
    report = log.verify()
    assert not report.ok
    bad = report.first_bad
    assert (bad.kind, bad.file, bad.line, bad.seq) == (kind, file, line, seq), bad
    assert report.to_dict()["first_bad"]["reason"] == bad.reason


def test_missing_file_reason_mentions_files(tmp_path):
    log = _three_days(tmp_path)
    _remove_middle_file(tmp_path)
    reason = log.verify().first_bad.reason
    assert "seq 3..5 missing" in reason and "day file removed" in reason


def test_restart_continues_the_chain(tmp_path):
    clock = Clock()
    first = _search(AuditLog(tmp_path, clock=clock), 2)
    clock.now += timedelta(days=1)
    reopened = AuditLog(tmp_path, clock=clock)
    entry = reopened.append("bob", "data", "density.read")
    assert entry["seq"] == 2 and entry["prev_hash"] == first[-1]["hash"]
    assert (tmp_path / "audit-2024-05-02.jsonl").exists()
    assert AuditLog(tmp_path).verify().ok


def test_two_instances_interleave_safely(tmp_path):
    a, b = AuditLog(tmp_path), AuditLog(tmp_path)
    for i in range(6):
        (a if i % 2 else b).append("p", "data", "tracks.read", parameters={"i": i})
    report = a.verify()
    assert report.ok and report.entries == 6


def test_clock_going_back_stays_in_the_newest_file(tmp_path):
    clock = Clock(DAY0 + timedelta(days=1))
    log = AuditLog(tmp_path, clock=clock)
    _search(log)
    clock.now = DAY0  # stepped back across midnight
    _search(log)
    assert [p.name for p in tmp_path.glob("audit-*.jsonl")] == ["audit-2024-05-02.jsonl"]
    assert log.verify().ok


def test_interrupted_write_is_reported_then_cut_off(tmp_path):
    clock = Clock()
    log = AuditLog(tmp_path, clock=clock)
    _search(log, 2)
    path = tmp_path / "audit-2024-05-01.jsonl"
    with path.open("ab") as f:
        f.write(b'{"seq": 2, "ts": "2024-')  # a crash mid-write
    report = log.verify()
    assert report.first_bad.kind == "truncated" and report.entries == 2
    entry = AuditLog(tmp_path, clock=clock).append("bob", "data", "tracks.read")
    assert entry["seq"] == 2
    report = log.verify()
    assert report.ok and report.entries == 3
    assert any(".torn" in w for w in report.warnings)
    assert (tmp_path / "audit-2024-05-01.jsonl.torn").read_bytes().startswith(b'{"seq": 2')


def _append_many(folder: str, who: str, count: int) -> None:
    log = AuditLog(folder)
    for i in range(count):
        log.append(who, "data", "tracks.read", parameters={"i": i})


def test_concurrent_processes_keep_a_valid_chain(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(target=_append_many, args=(str(tmp_path), f"p{i}", 40)) for i in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    report = AuditLog(tmp_path).verify()
    assert report.ok, report.first_bad
    assert report.entries == 80
    principals = [e["principal"] for e in AuditLog(tmp_path).entries()]
    assert sorted(set(principals)) == ["p0", "p1"]


# ------------------------------------------------------------------ purge


def test_purge_keeps_the_chain_verifiable(tmp_path):
    log = _three_days(tmp_path)
    result = log.purge_before(date(2024, 5, 3), principal="admin1", reason="retention")
    assert result["files"] == ["audit-2024-05-01.jsonl", "audit-2024-05-02.jsonl"]
    assert sorted(p.name for p in tmp_path.glob("audit-*.jsonl")) == ["audit-2024-05-03.jsonl"]
    checkpoint = json.loads((tmp_path / "checkpoint.json").read_text())
    assert checkpoint["seq"] == 5 and checkpoint["through"] == "2024-05-02"
    assert result["entry"]["action"] == "audit.purge"
    assert result["entry"]["parameters"]["checkpoint_hash"] == checkpoint["hash"]
    report = log.verify()
    assert report.ok, report.first_bad
    assert report.entries == 4 and report.checkpoint["seq"] == 5
    assert log.append("bob", "data", "tracks.read")["seq"] == 10
    assert AuditLog(tmp_path).verify().ok


def test_purge_never_removes_the_newest_file(tmp_path):
    log = _three_days(tmp_path)
    result = log.purge_before(date(2030, 1, 1))
    assert result["files"] == ["audit-2024-05-01.jsonl", "audit-2024-05-02.jsonl"]
    assert log.verify().ok
    assert log.purge_before(date(2030, 1, 1))["files"] == []


def test_purge_twice_and_restart(tmp_path):
    clock = Clock()
    log = AuditLog(tmp_path, clock=clock)
    for day in range(4):
        clock.now = DAY0 + timedelta(days=day)
        _search(log, 2)
    log.purge_before(date(2024, 5, 2))
    log.purge_before(date(2024, 5, 4))
    report = AuditLog(tmp_path, clock=clock).verify()
    assert report.ok, report.first_bad
    assert report.checkpoint["through"] == "2024-05-03"


def test_forged_checkpoint_is_detected(tmp_path):
    log = _three_days(tmp_path)
    # hide the first two days without a purge: a checkpoint made up from seq 5
    entry = next(e for e in log.entries() if e["seq"] == 5)
    forged = {"version": 1, "seq": 5, "hash": entry["hash"], "through": "2024-05-02"}
    (tmp_path / "checkpoint.json").write_text(json.dumps(forged))
    for name in ("audit-2024-05-01.jsonl", "audit-2024-05-02.jsonl"):
        (tmp_path / name).unlink()
    report = log.verify()
    assert not report.ok and report.first_bad.kind == "checkpoint"
    assert "not confirmed" in report.first_bad.reason


def test_unreadable_checkpoint_is_reported(tmp_path):
    log = _three_days(tmp_path)
    (tmp_path / "checkpoint.json").write_text("{")
    bad = log.verify().first_bad
    assert bad.kind == "checkpoint" and "checkpoint.json" in bad.reason


def test_interrupted_purge_still_verifies(tmp_path, monkeypatch):
    log = _three_days(tmp_path)

    def crash(self, *_args, **_kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(OSError, match="power cut"):
        log.purge_before(date(2024, 5, 3))
    monkeypatch.undo()
    report = log.verify()
    assert report.ok, report.first_bad
    assert any("interrupted purge" in w for w in report.warnings)
    assert log.purge_before(date(2024, 5, 3))["files"] == [
        "audit-2024-05-01.jsonl",
        "audit-2024-05-02.jsonl",
    ]
    report = log.verify()
    assert report.ok and not report.warnings


def test_purge_refuses_a_tampered_log(tmp_path):
    log = _three_days(tmp_path)
    _edit_field(tmp_path)
    with pytest.raises(AuditError, match="will not purge a log that does not verify"):
        log.purge_before(date(2024, 5, 3))
    assert len(list(tmp_path.glob("audit-*.jsonl"))) == 3


# ------------------------------------------------------------------ CLI


def _run(argv):
    parser = argparse.ArgumentParser()
    commands.add_security_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_verify_and_purge(tmp_path, capsys):
    _three_days(tmp_path)
    assert _run(["audit", "verify", "--audit", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 9
    assert _run(["audit", "purge", "--audit", str(tmp_path), "--before", "2024-05-02"]) == 0
    purged = json.loads(capsys.readouterr().out)
    assert purged["files"] == ["audit-2024-05-01.jsonl"]
    assert purged["entry"]["principal"].startswith("cli")
    _edit_field(tmp_path)
    assert _run(["audit", "verify", "--audit", str(tmp_path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["first_bad"]["kind"] == "edited"


def test_cli_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no audit folder"):
        _run(["audit", "verify", "--audit", str(tmp_path / "nope")])


def test_concurrent_appends_share_fsyncs_and_each_returns_only_once_synced(tmp_path, monkeypatch):
    import threading
    import time

    from sightline.security import audit as audit_module

    synced_sizes: list[int] = []
    real = audit_module._fsync_file

    def slow_fsync(path):
        time.sleep(0.02)  # a slow disk: appends pile up behind one fsync
        real(path)
        synced_sizes.append(path.stat().st_size)

    monkeypatch.setattr(audit_module, "_fsync_file", slow_fsync)
    log = AuditLog(tmp_path)
    returned: list[tuple[int, int]] = []

    def worker(i: int) -> None:
        entry = log.append("p", "data", "tracks.read", parameters={"i": i})
        # when append returns, an fsync covering this entry has completed
        returned.append((entry["seq"], max(synced_sizes, default=0)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(returned) == 40
    assert len(synced_sizes) < 40  # fsyncs were shared
    lines = (tmp_path / next(p.name for p in tmp_path.glob("audit-*.jsonl"))).read_bytes()
    ends = [i + 1 for i, b in enumerate(lines) if b == ord("\n")]
    for seq, synced in returned:
        assert synced >= ends[seq]  # the entry's line was inside a completed fsync
    assert log.verify().ok
