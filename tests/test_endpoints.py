"""The seam: the pipeline does what the replica endpoint says, and nothing it cannot hold.

How a run is shared belongs to the replica (:class:`Concurrency`): a
replica that wants every copy in flight and no second process (as a remote
one will) gets exactly that, through the same pipeline, with the same
mirror at the end. On a real exFAT drive, a folder renamed only in case is
respelled by the process that plans it, never handed to the helper
process, and ``--verify`` judges the replica by what the drive holds.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import child_env, synchro_command
from treeutil import BASE_NS, assert_rsync_clean, build, log_messages

import synchro
import synchro.pipeline.engine
from synchro.endpoints.base import Concurrency, OnChunk, Source
from synchro.endpoints.local.replica import LocalReplica
from synchro.pipeline.helper import ENV, Helper
from synchro.pipeline.plan import Step


class InFlight(LocalReplica):
    """A local replica that asks for the strategy of a remote one: no helper, every copy in flight."""

    concurrency = Concurrency(fork_helper=False, copies_in_flight=8, in_flight_min_size=0)
    jobs: list[str] = []  # noqa: RUF012  # the copies run as jobs, in the order submitted

    def copy_job(self, source: Source, folder: str, name: str, on_chunk: OnChunk | None = None):  # type: ignore[no-untyped-def]
        InFlight.jobs.append(f"{folder}/{name}" if folder else name)
        return super().copy_job(source, folder, name, on_chunk)


def test_a_replica_that_wants_copies_in_flight_gets_them_and_no_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    src.mkdir()
    build(
        src, {f"d{i}": {f"f{j}": f"{i}-{j}" * (j + 1) for j in range(20)} for i in range(6)}, mtime_ns=BASE_NS
    )
    rep.mkdir()
    InFlight.jobs = []
    # replica_at(path, options, say): the options and the log are for remote replicas.
    monkeypatch.setattr(synchro.pipeline.engine, "replica_at", lambda path, *rest: InFlight(path))
    monkeypatch.setenv(ENV, "2")  # the helper would be used on any machine, if the replica allowed it

    def no_helper(*args: object, **kwargs: object) -> None:
        raise AssertionError("a helper process was made for a replica that does not want one")

    monkeypatch.setattr(Helper, "__init__", no_helper)

    report = synchro.mirror(src, rep, logpath=tmp_path)

    assert report.exit_code == 0 and len(report.added) == 6 + 120
    assert sorted(InFlight.jobs) == sorted(f"d{i}/f{j}" for i in range(6) for j in range(20))
    assert_rsync_clean(src, rep)
    # The log lists each file once, as a run done in order would.
    added = [line for line in log_messages(tmp_path) if line.startswith("ADDED ")]
    assert len(added) == len(set(added)) == 126


def test_a_posix_replica_is_shared_with_the_helper_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, rep = tmp_path / "src", tmp_path / "rep"
    src.mkdir()
    build(src, {f"d{i}": {f"f{j}": "x" for j in range(30)} for i in range(8)}, mtime_ns=BASE_NS)
    rep.mkdir()
    given: list[str] = []
    real = Helper.give

    def give(self: Helper, steps: list[Step]) -> bool:
        given.append(steps[-1].rel)  # type: ignore[union-attr]
        return real(self, steps)

    monkeypatch.setattr(Helper, "give", give)
    monkeypatch.setenv(ENV, "2")
    assert synchro.mirror(src, rep, logpath=tmp_path).exit_code == 0
    assert given
    assert_rsync_clean(src, rep)


def test_a_folder_renamed_only_in_case_stays_with_the_process_that_renames_it(
    tmp_path: Path, exfat: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    tree = {f"d{i}": {f"f{j}": f"{i}{j}" for j in range(40)} for i in range(6)}
    build(src, {**tree, "Photos": {f"p{j:03}": str(j) for j in range(150)}}, mtime_ns=BASE_NS)
    monkeypatch.setenv(ENV, "2")
    assert synchro.mirror(src, exfat, logpath=tmp_path).exit_code == 0
    os.rename(src / "Photos", src / "photos")
    for i in range(6):  # changes in every other sub-tree, for the helper to take
        (src / f"d{i}" / "f0").write_text("changed", encoding="utf-8")
    given: list[str] = []
    real = Helper.give

    def give(self: Helper, steps: list[Step]) -> bool:
        given.append(steps[-1].rel)  # type: ignore[union-attr]
        return real(self, steps)

    monkeypatch.setattr(Helper, "give", give)
    report = synchro.mirror(src, exfat, logpath=tmp_path)

    assert report.exit_code == 0, report.failed
    assert given and "photos" not in given and "Photos" not in given
    assert sorted(os.listdir(exfat)) == sorted(["photos", *(f"d{i}" for i in range(6))])
    assert report.overwritten.count("photos/") == 1 and report.added == [] and report.deleted == []
    assert "OVERWRITTEN photos/ (renamed from Photos/)" in log_messages(tmp_path)
    assert report.bytes_copied == 6 * len("changed")  # the photos were not copied again


def test_verify_judges_an_exfat_replica_by_what_the_drive_holds(tmp_path: Path, exfat: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    build(src, {"a.txt": "alpha", "private": "secret", "sub": {"b": "beta"}}, mtime_ns=BASE_NS)
    os.chmod(src / "private", 0o600)
    os.symlink("a.txt", src / "link")  # not held by exFAT: skipped by the mirror, not missing
    assert synchro.mirror(src, exfat, logpath=tmp_path).exit_code == 0

    def verify() -> subprocess.CompletedProcess[str]:
        command = [*synchro_command(), "--verify", str(src), str(exfat), "24", str(tmp_path)]
        return subprocess.run(
            command, env=child_env(), capture_output=True, text=True, timeout=120, check=False
        )

    exact = verify()
    assert exact.returncode == 0, exact.stdout + exact.stderr
    (src / "sub" / "b").write_text("BETA", encoding="utf-8")  # same size and time: only the bytes differ
    os.utime(src / "sub" / "b", ns=(BASE_NS, BASE_NS))
    changed = verify()
    assert changed.returncode == 1
    assert "sub/b" in changed.stdout and "private" not in changed.stdout


def test_a_dry_run_onto_exfat_changes_nothing_and_says_the_same(tmp_path: Path, exfat: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    build(src, {"A.txt": "upper", "a.txt": "lower", "x:y": "colon", "keep": "k"}, mtime_ns=BASE_NS)
    (exfat / "old").write_text("old", encoding="utf-8")
    before = {name: os.stat(exfat / name).st_mtime_ns for name in os.listdir(exfat)}
    root = os.stat(exfat).st_mtime_ns

    report = synchro.mirror(src, exfat, logpath=tmp_path, dry_run=True)

    assert report.exit_code == 1  # what the real run would say: two names it cannot hold
    assert sorted(path for path, _ in report.failed) == ["a.txt", "x:y"]
    assert sorted(report.added) == ["A.txt", "keep"] and report.deleted == ["old"]
    assert {name: os.stat(exfat / name).st_mtime_ns for name in os.listdir(exfat)} == before
    assert os.stat(exfat).st_mtime_ns == root  # the probe put the folder's time back
    warnings = [line for line in log_messages(tmp_path) if line.startswith("WARNING ")]
    assert len(warnings) == 1
