"""The planner compares only what the replica can hold (:class:`Capabilities`).

Pure tests of :func:`synchro.pipeline.plan.plan_folder`: two listings and a
capability record in, typed steps out. What they promise on real file
systems (exFAT through FUSE, through the three faces) is tested in
``test_replica_fs.py``; here every rule is pinned down one by one, and a
POSIX replica is shown to be planned exactly as before.
"""

from __future__ import annotations

import pytest
from treeutil import BASE_NS, SECOND

from synchro.endpoints.base import Kind, Listing, Meta
from synchro.endpoints.capabilities import FULL_POSIX, WINDOWS_FORBIDDEN, Capabilities
from synchro.pipeline.plan import Action, Descend, Op, PlanRules, Side, Step, fit_rules, plan_folder

EXFAT = FULL_POSIX._replace(
    fs_type="exfat",
    owners=False,
    permissions=False,
    symlinks=False,
    link_times=False,
    special_files=False,
    time_precision_ns=SECOND,
    case_sensitive=False,
    forbidden_chars=WINDOWS_FORBIDDEN,
    utf8_only=True,
)
FAT = EXFAT._replace(fs_type="vfat", time_precision_ns=2 * SECOND)


def file(mtime_ns: int = BASE_NS, size: int = 3, mode: int = 0o644, uid: int = 0) -> Meta:
    return Meta(Kind.FILE, size, mtime_ns, mode, uid, uid)


def folder(mtime_ns: int = BASE_NS, mode: int = 0o755) -> Meta:
    return Meta(Kind.DIR, 0, mtime_ns, mode, 0, 0)


def link(target: str, mtime_ns: int = BASE_NS) -> Meta:
    return Meta(Kind.LINK, len(target), mtime_ns, 0o777, 0, 0, target)


def plan(
    src: dict[str, Meta], rep: dict[str, Meta], holds: Capabilities, **rules: object
) -> tuple[list[Step], list[str]]:
    """Plan a sub-folder "d" that exists on both sides (its own metadata equal)."""
    top = Descend("d", Side.BOTH, folder(), folder())
    fitted = fit_rules(PlanRules(**rules), holds)  # type: ignore[arg-type]
    return plan_folder(top, Listing(src, {}), Listing(rep, {}), fitted)


def actions(steps: list[Step]) -> list[tuple[Op, str]]:
    return [(step.op, step.path) for step in steps if isinstance(step, Action) and step.op is not Op.DIRMETA]


def failures(steps: list[Step]) -> dict[str, str]:
    return {s.path: s.reason for s in steps if isinstance(s, Action) and s.op is Op.FAIL}


# --- names that differ only in case ----------------------------------------------------------


def test_on_a_case_sensitive_replica_both_names_are_mirrored() -> None:
    steps, _ = plan({"A.txt": file(), "a.txt": file()}, {}, FULL_POSIX)
    assert sorted(actions(steps)) == [(Op.COPY, "d/A.txt"), (Op.COPY, "d/a.txt")]


@pytest.mark.parametrize(
    "replica",
    [{}, {"A.txt": file()}, {"a.txt": file()}],
    ids=["empty", "holds-the-first", "holds-the-other"],
)
def test_a_collision_keeps_the_first_name_in_byte_order_whatever_the_replica_holds(
    replica: dict[str, Meta],
) -> None:
    steps, _ = plan({"a.txt": file(size=1), "A.txt": file(size=2)}, replica, EXFAT)
    assert failures(steps) == {"d/a.txt": "the replica's file system does not tell it from d/A.txt"}
    done = actions(steps)
    assert (Op.FAIL, "d/a.txt") in done
    if "a.txt" in replica:  # the other spelling is respelled first, then overwritten
        assert done[0] == (Op.RENAME, "d/A.txt")
        assert (Op.COPY, "d/A.txt") in done
    elif "A.txt" in replica:
        assert (Op.RENAME, "d/A.txt") not in done
    else:
        assert (Op.COPY, "d/A.txt") in done
    # Never a deletion: the replica's entry is the kept name's.
    assert not [a for a in done if a[0] in (Op.DELETE, Op.RMDIR)]


def test_a_colliding_folder_fails_with_a_slash_and_is_not_entered() -> None:
    steps, _ = plan({"Photos": folder(), "photos": folder()}, {}, EXFAT)
    assert failures(steps) == {"d/photos": "the replica's file system does not tell it from d/Photos/"}
    descended = [s.rel for s in steps if isinstance(s, Descend)]
    assert descended == ["d/Photos"]


def test_a_case_only_rename_of_a_file_moves_no_data() -> None:
    steps, untouched = plan({"a.txt": file()}, {"A.txt": file(mode=0o777)}, EXFAT)
    [rename] = [s for s in steps if isinstance(s, Action) and s.op is Op.RENAME]
    assert (rename.dir, rename.reason, rename.name) == ("d", "A.txt", "a.txt")
    assert actions(steps) == [(Op.RENAME, "d/a.txt")]
    assert "a.txt" in untouched


def test_a_case_only_rename_of_a_folder_keeps_its_content_and_stays_in_this_process() -> None:
    steps, _ = plan({"photos": folder()}, {"Photos": folder()}, EXFAT)
    assert actions(steps) == [(Op.RENAME, "d/photos")]
    [down] = [s for s in steps if isinstance(s, Descend)]
    # Walked as a folder on both sides (nothing deleted, nothing copied
    # again), and marked so that the sub-tree is never given to a helper
    # that could reach it before the rename.
    assert (down.rel, down.side, down.replaces) == ("d/photos", Side.BOTH, True)


def test_a_name_only_in_the_replica_under_another_case_is_deleted_only_if_no_source_name_folds_to_it() -> (
    None
):
    steps, _ = plan({"b.txt": file()}, {"A.txt": file(), "B.TXT": file()}, EXFAT)
    assert sorted(actions(steps)) == [(Op.DELETE, "d/A.txt"), (Op.RENAME, "d/b.txt")]


def test_names_beyond_ascii_fold_as_the_replica_files_them() -> None:
    steps, _ = plan({"Été": file(), "été": file()}, {}, EXFAT)
    assert list(failures(steps)) == ["d/été"]  # "É" is 0xC3 0x89, "é" 0xC3 0xA9


# --- names the replica cannot hold -------------------------------------------------------------


def test_names_with_forbidden_characters_fail_alone_with_the_reason() -> None:
    steps, _ = plan({"a:b": file(), "what?": file(), "fine": file()}, {}, EXFAT)
    assert failures(steps) == {
        "d/a:b": "the replica's file system (exfat) cannot hold : in a name",
        "d/what?": "the replica's file system (exfat) cannot hold ? in a name",
    }
    assert (Op.COPY, "d/fine") in actions(steps)


def test_a_name_too_long_fails_alone() -> None:
    holds = FULL_POSIX._replace(fs_type="ecryptfs", max_name_bytes=143)
    steps, _ = plan({"x" * 144: file(), "x" * 143: file()}, {}, holds)
    assert failures(steps) == {
        "d/" + "x" * 144: "the name is longer than the replica's file system (ecryptfs) can hold "
        "(144 bytes, at most 143)"
    }


def test_an_excluded_name_the_replica_cannot_hold_is_not_a_failure() -> None:
    steps, _ = plan({"a:b": file()}, {}, EXFAT, excluded=lambda path, is_dir: path == "d/a:b")
    assert failures(steps) == {}


# --- what is compared ---------------------------------------------------------------------------


def test_permission_bits_and_owners_are_not_compared_where_the_replica_cannot_hold_them() -> None:
    steps, untouched = plan(
        {"f": file(mode=0o600, uid=1000)}, {"f": file(mode=0o777, uid=0)}, EXFAT, keep_owner=True
    )
    assert actions(steps) == [] and untouched == ["f", ""]


@pytest.mark.parametrize(
    ("src", "rep"),
    [(file(mode=0o600), file(mode=0o644)), (file(uid=1000), file(uid=0))],
    ids=["mode", "owner"],
)
def test_on_a_posix_replica_a_mode_or_owner_change_is_still_an_attribute_change(src: Meta, rep: Meta) -> None:
    steps, _ = plan({"f": src}, {"f": rep}, FULL_POSIX, keep_owner=True)
    assert actions(steps) == [(Op.ATTRS, "d/f")]


@pytest.mark.parametrize(
    ("holds", "rounded", "same"),
    [
        (EXFAT, BASE_NS + 123_456_789 - 123_456_789, True),  # cut to the second
        (FAT, BASE_NS - SECOND, True),  # cut to two seconds
        (FAT, BASE_NS + SECOND, True),  # or rounded up (Windows)
        (EXFAT, BASE_NS - SECOND, False),  # a second apart is a change
        (FULL_POSIX, BASE_NS + 1, False),  # a nanosecond apart on ext4 is a change
    ],
    ids=["exfat-cut", "fat-cut", "fat-up", "exfat-second", "posix-ns"],
)
def test_times_are_compared_at_the_replicas_precision(holds: Capabilities, rounded: int, same: bool) -> None:
    source_time = BASE_NS + 123_456_789 if holds is EXFAT else BASE_NS
    steps, _ = plan({"f": file(source_time)}, {"f": file(rounded)}, holds)
    assert (actions(steps) == []) is same


def test_the_modify_window_widens_the_precision_never_narrows_it() -> None:
    steps, _ = plan({"f": file(BASE_NS + 3 * SECOND)}, {"f": file(BASE_NS)}, FAT, modify_window_ns=5 * SECOND)
    assert actions(steps) == []
    steps, _ = plan({"f": file(BASE_NS + SECOND)}, {"f": file(BASE_NS)}, FAT, modify_window_ns=1)
    assert actions(steps) == []


def test_links_are_skipped_with_the_reason_where_the_replica_holds_none() -> None:
    steps, _ = plan({"l": link("target")}, {}, EXFAT)
    [skip] = [s for s in steps if isinstance(s, Action) and s.op is Op.SKIP]
    assert skip.reason == "the replica's file system (exfat) cannot hold symbolic links"


def test_a_links_time_is_not_compared_where_the_replica_cannot_set_it() -> None:
    holds = FULL_POSIX._replace(link_times=False)
    steps, _ = plan({"l": link("t", BASE_NS)}, {"l": link("t", BASE_NS + 5 * SECOND)}, holds)
    assert actions(steps) == []


def test_where_times_cannot_be_set_at_all_sizes_alone_tell_a_change() -> None:
    holds = FULL_POSIX._replace(fs_type="fusefat", times=False)
    steps, _ = plan({"f": file(BASE_NS), "g": file(size=4)}, {"f": file(0), "g": file(0, size=3)}, holds)
    assert actions(steps) == [(Op.COPY, "d/g")]
