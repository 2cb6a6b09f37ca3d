"""The capability record, and the probe that measures it on real file systems."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import NOBODY, open_to_others, run_as_nobody
from fsfixtures import Volume

from synchro.endpoints.capabilities import FULL_POSIX, WINDOWS_FORBIDDEN, Capabilities, step_words
from synchro.endpoints.local.mounts import fs_name, mount_of, sniff
from synchro.endpoints.local.probe import PROBE_NAME, guess, probe

EXFAT = FULL_POSIX._replace(
    fs_type="exfat",
    owners=False,
    permissions=False,
    symlinks=False,
    link_times=False,
    special_files=False,
    time_precision_ns=10**9,
    case_sensitive=False,
    forbidden_chars=WINDOWS_FORBIDDEN,
    utf8_only=True,
)


def measure(folder: Path, *, as_root: bool = True) -> Capabilities:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return probe(fd, as_root=as_root)
    finally:
        os.close(fd)


def measure_as_nobody(folder: Path) -> dict[str, Any]:
    def work() -> tuple[int, Any]:
        return 0, measure(folder, as_root=False)._asdict()

    result = run_as_nobody(work)
    assert result.code == 0
    payload: dict[str, Any] = result.payload
    return payload


# --- the record ------------------------------------------------------------------


def test_full_posix_keeps_everything() -> None:
    assert FULL_POSIX.cannot_keep() == []
    assert FULL_POSIX.name_key("A.txt") == "A.txt"
    assert FULL_POSIX.name_problem("a:b") is None
    assert FULL_POSIX.name_problem(os.fsdecode(b"bad\xff")) is None
    assert FULL_POSIX.holds_every_name
    assert not EXFAT.holds_every_name
    assert not FULL_POSIX._replace(max_name_bytes=100).holds_every_name


def test_cannot_keep_says_what_is_lost_in_words() -> None:
    assert EXFAT.cannot_keep() == [
        "owners",
        "permissions",
        "symbolic links",
        "exact times (1 s)",
        "names that differ only in case",
        'names with " * : < > ? \\ | or control characters',
        "names that are not UTF-8",
    ]
    no_times = FULL_POSIX._replace(owners=False, times=False, link_times=False)
    assert no_times.cannot_keep() == ["owners", "the times of symbolic links", "modification times"]


@pytest.mark.parametrize(
    ("ns", "words"),
    [(1, "1 ns"), (100, "100 ns"), (1000, "1 µs"), (10**7, "10 ms"), (10**9, "1 s"), (2 * 10**9, "2 s")],
)
def test_step_words(ns: int, words: str) -> None:
    assert step_words(ns) == words


def test_name_key_folds_case_on_case_insensitive_replicas_only() -> None:
    assert EXFAT.name_key("A.txt") == EXFAT.name_key("a.txt")
    assert EXFAT.name_key("Photos") == EXFAT.name_key("photos")
    assert EXFAT.name_key("É") == EXFAT.name_key("é")
    assert EXFAT.name_key("\u03c3") == EXFAT.name_key("\u03c2")  # sigma, final sigma
    # exFAT keeps "ß" and "SS" apart: one character never folds into two.
    assert EXFAT.name_key("Straße") != EXFAT.name_key("STRASSE")
    assert EXFAT.name_key("Straße") == EXFAT.name_key("STRAßE")
    assert FULL_POSIX.name_key("A.txt") != FULL_POSIX.name_key("a.txt")


def test_name_problem_names_the_characters_and_the_file_system() -> None:
    assert EXFAT.name_problem("a:b") == "the replica's file system (exfat) cannot hold : in a name"
    assert EXFAT.name_problem("what?") == "the replica's file system (exfat) cannot hold ? in a name"
    assert (
        EXFAT.name_problem("a\x01b")
        == "the replica's file system (exfat) cannot hold control characters in a name"
    )
    assert EXFAT.name_problem("ok name.txt") is None
    assert (
        EXFAT.name_problem(os.fsdecode(b"bad\xff"))
        == "the replica's file system (exfat) cannot hold a name that is not UTF-8"
    )
    short = FULL_POSIX._replace(fs_type="s3", max_name_bytes=10)
    assert short.name_problem("é" * 6) == (
        "the name is longer than the replica's file system (s3) can hold (12 bytes, at most 10)"
    )


def test_guess_knows_fat_and_exfat_and_takes_the_rest_for_posix() -> None:
    assert guess("exfat") == EXFAT
    assert guess("vfat").time_precision_ns == 2 * 10**9
    assert guess("vfat").cannot_keep()[:2] == ["owners", "permissions"]
    assert guess("ext4") == FULL_POSIX._replace(fs_type="ext4")


# --- the probe on POSIX file systems: everything, as before ---------------------------


def test_probe_of_a_disk_folder_is_full_posix(tmp_path: Path) -> None:
    found = measure(tmp_path)
    assert found._replace(fs_type="posix") == FULL_POSIX
    assert found.fs_type == fs_name(os.stat(tmp_path).st_dev)
    assert found.fs_type not in ("unknown", "")


def test_probe_of_tmpfs_is_full_posix(tmpfs: Path) -> None:
    assert measure(tmpfs) == FULL_POSIX._replace(fs_type="tmpfs")


def test_probe_as_another_user_of_their_folder_is_full_posix(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    os.chown(folder, NOBODY, NOBODY)
    open_to_others(folder)
    assert Capabilities(**measure_as_nobody(folder)) == FULL_POSIX._replace(fs_type=measure(folder).fs_type)


def test_probe_leaves_nothing_and_puts_the_folder_times_back(tmpfs: Path) -> None:
    (tmpfs / "data").write_text("kept")
    os.utime(tmpfs, ns=(1_500_000_000_111_222_333, 1_600_000_000_444_555_666))
    measure(tmpfs)
    st = os.stat(tmpfs)  # before listing it, which sets its access time
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_500_000_000_111_222_333, 1_600_000_000_444_555_666)
    assert sorted(os.listdir(tmpfs)) == ["data"]
    assert (tmpfs / "data").read_text() == "kept"


@pytest.mark.parametrize("leftover", ["folder", "file", "link"])
def test_probe_removes_the_leftover_of_a_crashed_run(tmpfs: Path, leftover: str) -> None:
    path = tmpfs / PROBE_NAME
    if leftover == "folder":
        path.mkdir()
        (path / "cAsE").write_text("")
        os.symlink("cAsE", path / "link")
    elif leftover == "file":
        path.write_text("")
    else:
        os.symlink("/etc", path)
    assert measure(tmpfs) == FULL_POSIX._replace(fs_type="tmpfs")
    assert os.listdir(tmpfs) == []
    assert os.path.isdir("/etc")


def test_probe_never_removes_a_folder_it_did_not_make(tmpfs: Path) -> None:
    # A folder inside the reserved name is not the probe's: it stays, and
    # the record comes from the file system's name.
    (tmpfs / PROBE_NAME / "someone's").mkdir(parents=True)
    (tmpfs / PROBE_NAME / "cAsE").write_text("")
    assert measure(tmpfs) == guess("tmpfs")
    assert (tmpfs / PROBE_NAME / "someone's").is_dir()


def test_probe_of_a_read_only_folder_guesses_from_the_file_system(tmpfs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    assert measure(tmpfs) == FULL_POSIX._replace(fs_type="tmpfs")
    assert os.listdir(tmpfs) == []


# --- the probe on the drives people back up to ------------------------------------------


def exfat_precision(volume: Volume) -> int:
    # The kernel's driver keeps 10 ms; exfat-fuse whole seconds.
    return 10**7 if volume.driver == "kernel" else 10**9


def test_probe_of_exfat_as_root(exfat: Path, exfat_volume: Volume) -> None:
    found = measure(exfat)
    assert found == EXFAT._replace(time_precision_ns=exfat_precision(exfat_volume))
    assert os.listdir(exfat) == []


def test_probe_of_an_exfat_drive_mounted_for_the_user(exfat_volume_for_nobody: Volume) -> None:
    folder = exfat_volume_for_nobody.folder()
    open_to_others(folder)
    found = measure_as_nobody(folder)
    expected = EXFAT._replace(owners=True, time_precision_ns=exfat_precision(exfat_volume_for_nobody))
    if exfat_volume_for_nobody.driver == "exfat-fuse":
        # Only root may read the drive's boot sector to tell what "fuseblk" is.
        expected = expected._replace(fs_type="fuseblk")
    assert Capabilities(**found) == expected
    assert os.listdir(folder) == []


def test_probe_of_an_exfat_drive_mounted_for_root_as_another_user(exfat: Path, exfat_volume: Volume) -> None:
    # Every entry is root's: the user may write, but set no time nor mode.
    if exfat_volume.driver == "kernel":
        pytest.skip("the kernel's exfat refuses other users' writes at all (mode 0755)")
    open_to_others(exfat)
    found = Capabilities(**measure_as_nobody(exfat))
    assert (found.owners, found.permissions, found.times) == (False, False, False)
    assert "modification times" in found.cannot_keep()
    assert os.listdir(exfat) == []


def test_probe_of_a_read_only_exfat_folder_guesses_exfat(exfat: Path, tmp_path: Path) -> None:
    view = tmp_path / "view"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(exfat), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        assert measure(view) == EXFAT
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_probe_of_fat32(vfat: Path) -> None:
    found = measure(vfat)
    assert found._replace(fs_type="vfat") == EXFAT._replace(fs_type="vfat", time_precision_ns=2 * 10**9)
    assert found.fs_type in ("vfat", "fuse.fusefat")
    assert os.listdir(vfat) == []


def test_probe_of_a_case_folding_ext4_folder(casefold: Path) -> None:
    found = measure(casefold)
    assert found == FULL_POSIX._replace(fs_type="ext4", case_sensitive=False, utf8_only=found.utf8_only)


# --- the file system's name -------------------------------------------------------


def test_fs_name_reads_mountinfo_and_the_boot_sector(exfat: Path, exfat_volume: Volume, tmpfs: Path) -> None:
    assert fs_name(os.stat(tmpfs).st_dev) == "tmpfs"
    assert fs_name(os.stat(exfat).st_dev) == "exfat"
    mount = mount_of(os.stat(exfat).st_dev)
    assert mount is not None
    if exfat_volume.driver == "exfat-fuse":
        assert mount.fs_type == "fuseblk"
        assert sniff(mount.source) == "exfat"
    assert sniff("/dev/null") is None
    assert sniff("tmpfs") is None


def test_mount_of_unescapes_the_source_and_knows_no_device(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "36 35 98:0 / /mnt rw,noatime shared:1 - ext4 /dev/root rw\n"
        "37 35 0:52 / /media/usb\\040key rw - fuse.sshfs me@host:/my\\040files rw,user_id=0\n"
    )
    assert mount_of(os.makedev(98, 0), str(info)) == ("ext4", "/dev/root")
    assert mount_of(os.makedev(0, 52), str(info)) == ("fuse.sshfs", "me@host:/my files")
    assert mount_of(os.makedev(1, 1), str(info)) is None
    assert fs_name(os.makedev(1, 1), str(info)) == "unknown"
    assert fs_name(os.makedev(0, 52), str(tmp_path / "missing")) == "unknown"


def test_what_the_source_side_cannot_have_either_is_no_loss() -> None:
    from synchro.endpoints.capabilities import FULL_POSIX, WINDOWS_FORBIDDEN, WINDOWS_NATIVE

    ntfs = FULL_POSIX._replace(
        fs_type="ntfs",
        owners=False,
        symlinks=False,
        case_sensitive=False,
        time_precision_ns=100,
        forbidden_chars=WINDOWS_FORBIDDEN,
        windows_names=True,
    )
    assert "names Windows reserves" in ntfs.cannot_keep()
    # A Windows source has no such names, owners or finer times: only the links are lost.
    assert ntfs.cannot_keep(WINDOWS_NATIVE) == ["symbolic links"]
