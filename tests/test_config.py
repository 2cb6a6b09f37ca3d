"""The INI file of pairs: every key, paths, and every mistake named by pair and key."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from synchro.errors import ConfigError
from synchro.faces.config import KEYS, config_path, load_config, parse_config
from synchro.options import DeleteLimit

FOLDER = "/etc/backups"
ENV = {"HOME": "/home/ana", "DRIVE": "/mnt/usb"}


def parse(text: str, environ: dict[str, str] | None = None) -> tuple:  # type: ignore[type-arg]
    return parse_config(
        text, folder=FOLDER, origin="backups.ini", environ=ENV if environ is None else environ
    ).pairs


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, folder=FOLDER, origin="backups.ini", environ=ENV)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_every_key_is_read() -> None:
    (pair,) = parse(
        """
[DEFAULT]
interval = 6

[photos]
source = ~/Pictures
replica = $DRIVE/Pictures
logpath = /var/log/synchro
interval = 0.5
exclude =
    *.tmp

    .cache/
checksum = yes
max_delete = 25%
modify_window = 2
delete_excluded = true
create_replica = on
"""
    )
    assert pair.name == "photos"
    assert pair.source == "/home/ana/Pictures"
    assert pair.replica == "/mnt/usb/Pictures"
    assert pair.logpath == "/var/log/synchro"
    assert pair.interval == 0.5
    options = pair.options
    assert options.exclude == ("*.tmp", ".cache/")
    assert options.checksum and options.delete_excluded and options.create_replica
    assert options.max_delete == DeleteLimit(files=None, percent=25.0)
    assert options.modify_window == 2.0
    assert not options.dry_run  # a flag of a run, never a key


def test_defaults_and_the_default_section() -> None:
    first, second = parse(
        """
[DEFAULT]
max_delete = 10
interval = 4

[a]
source = a
replica = /b/a

[b]
source = b
replica = /b/b
interval = 1
max_delete = 50%
"""
    )
    assert (first.interval, first.options.max_delete) == (4.0, DeleteLimit(files=10, percent=None))
    assert (second.interval, second.options.max_delete) == (1.0, DeleteLimit())
    assert first.logpath == FOLDER  # logpath defaults to the INI's folder


def test_without_defaults() -> None:
    (pair,) = parse("[a]\nsource = a\nreplica = b\n")
    assert (pair.interval, pair.logpath, pair.options.max_delete) == (24.0, FOLDER, DeleteLimit())
    assert not pair.options.create_replica


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("data", f"{FOLDER}/data"),
        ("./data/", f"{FOLDER}/data"),
        (".", FOLDER),
        ("/abs/data", "/abs/data"),
        ("~/data", "/home/ana/data"),
        ("${DRIVE}/data", "/mnt/usb/data"),
        # ".." is left to the kernel: FOLDER may be a symlink.
        ("../data", f"{FOLDER}/../data"),
    ],
    ids=["relative", "dot-slash", "dot", "absolute", "tilde", "braced-variable", "dot-dot"],
)
def test_paths_are_relative_to_the_ini_folder(value: str, expected: str) -> None:
    (pair,) = parse(f"[a]\nsource = {value}\nreplica = /r\nlogpath = {value}\n")
    assert pair.source == expected
    assert pair.logpath == expected


def test_load_config_takes_paths_from_the_file_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    ini = tmp_path / "conf" / "backups.ini"
    ini.write_text("[a]\nsource = src\nreplica = rep\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config = load_config("conf/backups.ini")
    assert config.path == "conf/backups.ini"
    assert config.pairs[0].source == f"{tmp_path}/conf/src"
    assert config.pairs[0].replica == f"{tmp_path}/conf/rep"


def test_config_path_order() -> None:
    assert config_path("given.ini", {"SYNCHRO_CONFIG": "env.ini"}) == "given.ini"
    assert config_path("", {"SYNCHRO_CONFIG": "env.ini"}) == "env.ini"
    assert config_path(None, {}) == "backups.ini"


def test_pairs_are_found_by_name() -> None:
    config = parse_config("[b]\nsource=b\nreplica=/r/b\n[a]\nsource=a\nreplica=/r/a\n", folder=FOLDER)
    assert config.names == ("b", "a")  # the file's order
    assert config.pair("a").source == f"{FOLDER}/a"
    assert config.select(None) == config.pairs
    assert config.select("b") == (config.pair("b"),)
    with pytest.raises(ConfigError, match=r"^unknown pair 'c' in backups.ini; its pairs are: b, a$"):
        config.pair("c")


PAIR = "[photos]\nsource = src\nreplica = /r\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            PAIR + "max_delet = 5\n",
            "backups.ini: [photos] unknown key 'max_delet' (did you mean 'max_delete'?); known keys: "
            + ", ".join(KEYS),
        ),
        (
            "[DEFAULT]\nchecksums = yes\n" + PAIR,
            "backups.ini: [DEFAULT] unknown key 'checksums' (did you mean 'checksum'?); known keys: "
            + ", ".join(KEYS),
        ),
        (
            PAIR + "dry_run = yes\n",
            "backups.ini: [photos] unknown key 'dry_run'",
        ),
        (
            "[photos]\nreplica = /r\n",
            "backups.ini: [photos] source: missing; every pair needs a source and a replica",
        ),
        (
            "[photos]\nsource = src\nreplica =\n",
            "backups.ini: [photos] replica: missing; every pair needs a source and a replica",
        ),
        (PAIR + "checksum = maybe\n", "backups.ini: [photos] checksum: expected yes or no, got 'maybe'"),
        (PAIR + "create_replica = 2\n", "backups.ini: [photos] create_replica: expected yes or no, got '2'"),
        (
            PAIR + "delete_excluded = si\n",
            "backups.ini: [photos] delete_excluded: expected yes or no, got 'si'",
        ),
        (
            PAIR + "max_delete = lots\n",
            "backups.ini: [photos] max_delete: expected a number N or a percentage P% (e.g. 50%), got 'lots'",
        ),
        (
            PAIR + "modify_window = two\n",
            "backups.ini: [photos] modify_window: expected a number of seconds, got 'two'",
        ),
        (
            PAIR + "interval = daily\n",
            "backups.ini: [photos] interval: expected a number of hours, got 'daily'",
        ),
        (PAIR + "interval = 0\n", "backups.ini: [photos] interval: expected a number of hours > 0, got '0'"),
        (
            "[DEFAULT]\ninterval = -2\n" + PAIR,
            "backups.ini: [DEFAULT] interval: expected a number of hours > 0, got '-2'",
        ),
        (
            "[photos]\nsource = $NOT_SET/src\nreplica = /r\n",
            "backups.ini: [photos] source: environment variable $NOT_SET is not set (in '$NOT_SET/src')",
        ),
        (
            "[photos]\nsource = src\nreplica = ${NOT_SET}/r\n",
            "backups.ini: [photos] replica: environment variable ${NOT_SET} is not set (in '${NOT_SET}/r')",
        ),
    ],
    ids=[
        "typo",
        "typo-in-default",
        "dry-run-is-no-key",
        "missing-source",
        "empty-replica",
        "checksum",
        "create-replica",
        "delete-excluded",
        "max-delete",
        "modify-window",
        "interval",
        "interval-zero",
        "interval-in-default",
        "unset-variable",
        "unset-braced-variable",
    ],
)
def test_a_mistake_names_the_pair_and_the_key(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "backups.ini: no pairs; add a section such as [photos] with source and replica"),
        (
            "[DEFAULT]\ninterval = 2\n",
            "backups.ini: no pairs; add a section such as [photos] with source and replica",
        ),
        (
            "source = x\n",
            "backups.ini:1: 'source = x' is outside any section; "
            "the file starts with a section header such as [DEFAULT] or [photos]",
        ),
        ("[a]\nsource = x\nsource = y\nreplica = z\n", "backups.ini:3: [a] source is given twice"),
        ("[a]\nsource = x\nreplica = z\n[a]\n", "backups.ini:4: section [a] is given twice"),
        ("[a\nsource = x\n", "backups.ini:1: '[a' is no section header: it needs a closing ]"),
        (
            "[a]\nsource = x\nreplica = z\nmax_delete 10\n",
            "backups.ini:4: expected key = value or a [section] header, got 'max_delete 10'",
        ),
        (
            "[a]\nsource = x\n[b\nreplica = z\nlast\n",
            "backups.ini:3: '[b' is no section header: it needs a closing ] (and 1 more wrong line)",
        ),
    ],
    ids=[
        "empty",
        "only-defaults",
        "no-section",
        "duplicate-key",
        "duplicate-section",
        "broken-header",
        "no-equals",
        "broken-header-later",
    ],
)
def test_a_malformed_file_is_one_line_with_its_line_number(text: str, expected: str) -> None:
    assert error_of(text) == expected


@pytest.mark.parametrize("header", ["[DEFAUL]", "[default]", "[Defaults]", "[DEFALT]"])
def test_a_section_meant_as_default_gets_a_hint(header: str) -> None:
    text = f"{header}\nlogpath = logs\n[a]\nsource = x\nreplica = /r\n"
    assert error_of(text) == (
        f"backups.ini: {header} source: missing; every pair needs a source and a replica "
        "(did you mean [DEFAULT]?)"
    )


def test_a_pair_named_almost_default_is_still_a_pair() -> None:
    (pair,) = parse("[defaults]\nsource = x\nreplica = /r\n")
    assert pair.name == "defaults"


def test_a_byte_order_mark_is_no_part_of_the_file(tmp_path: Path) -> None:
    # Notepad saves "UTF-8" with a BOM; configparser would see "\ufeff[DEFAULT]".
    path = tmp_path / "backups.ini"
    path.write_text("[DEFAULT]\ninterval = 6\n[é]\nsource = src\nreplica = rep\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf[DEFAULT]")
    (pair,) = load_config(path).pairs
    assert (pair.name, pair.interval, pair.source) == ("é", 6.0, f"{tmp_path}/src")
    assert parse_config("\ufeff[a]\nsource = s\nreplica = /r\n", folder=FOLDER).names == ("a",)


UNSET = "[a]\nsource = s\nreplica = /r/a\n[usb]\nsource = s\nreplica = $DRIVE/usb\n[c]\nsource = s\nreplica = /r/c\n"


def test_partial_keeps_the_other_pairs_when_one_section_is_wrong() -> None:
    config = parse_config(UNSET, folder=FOLDER, origin="backups.ini", environ={}, partial=True)
    assert config.names == ("a", "usb", "c")
    assert [pair.name for pair in config.pairs] == ["a", "c"]
    (problem,) = config.problems
    assert problem.name == "usb"
    assert problem.error.detail == "replica: environment variable $DRIVE is not set (in '$DRIVE/usb')"
    assert str(problem.error) == (
        "backups.ini: [usb] replica: environment variable $DRIVE is not set (in '$DRIVE/usb')"
    )
    assert config.pair("a").replica == "/r/a"
    with pytest.raises(ConfigError, match=r"^backups.ini: \[usb\] replica: environment variable \$DRIVE"):
        config.pair("usb")
    # Without partial, the first wrong section stops the whole file (what the runs use).
    with pytest.raises(ConfigError, match=r"^backups.ini: \[usb\] replica: environment variable \$DRIVE"):
        parse_config(UNSET, folder=FOLDER, origin="backups.ini", environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[DEFAULT]\nchecksum = often\n" + UNSET, "backups.ini: [DEFAULT] checksum: expected yes or no"),
        ("[a]\nsource = s\nreplica = /r\n[b]\nsource = t\nreplica = /r\n", "backups.ini: pairs [a] and [b]"),
        ("[a\n", "backups.ini:1: '[a' is no section header"),
    ],
    ids=["in-default", "overlap", "form"],
)
def test_partial_still_stops_at_what_concerns_every_pair(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}"):
        parse_config(text, folder=FOLDER, origin="backups.ini", environ={}, partial=True)


def test_a_percent_sign_is_no_interpolation() -> None:
    (pair,) = parse("[a]\nsource = 100%/x\nreplica = /r\nmax_delete = 100%\n")
    assert pair.source == f"{FOLDER}/100%/x"
    assert pair.options.max_delete.unlimited


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (
            [("a", "/s1", "/r"), ("b", "/s2", "/r/")],
            "backups.ini: pairs [a] and [b] have the same replica /r; each pair needs its own",
        ),
        (
            [("a", "/s1", "/r"), ("b", "/s2", "/r/b")],
            "backups.ini: the replica of [b] is inside the replica of [a] (/r), whose mirror would delete it",
        ),
        (
            [("a", "/s1", "/r/a"), ("b", "/s2", "/r")],
            "backups.ini: the replica of [a] is inside the replica of [b] (/r), whose mirror would delete it",
        ),
        (
            [("a", "/s1", "/r"), ("b", "/r", "/q")],
            "backups.ini: the replica of [a] (/r) overlaps the source of [b] (/r); "
            "a mirror would overwrite that pair's originals",
        ),
        (
            [("a", "/s1", "/s2/inside"), ("b", "/s2", "/q")],
            "backups.ini: the replica of [a] (/s2/inside) overlaps the source of [b] (/s2); "
            "a mirror would overwrite that pair's originals",
        ),
        (
            [("a", "/s1", "/r"), ("b", "/r/sub", "/q")],
            "backups.ini: the replica of [a] (/r) overlaps the source of [b] (/r/sub); "
            "a mirror would overwrite that pair's originals",
        ),
    ],
    ids=[
        "same-replica",
        "replica-in-replica",
        "replica-around-replica",
        "replica-is-source",
        "replica-in-source",
        "source-in-replica",
    ],
)
def test_pairs_that_would_destroy_each_other_are_refused(
    pairs: list[tuple[str, str, str]], expected: str
) -> None:
    text = "".join(f"[{name}]\nsource = {src}\nreplica = {rep}\n" for name, src, rep in pairs)
    assert error_of(text) == expected


def test_overlaps_are_found_through_symlinks(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    text = f"[a]\nsource = s1\nreplica = {tmp_path}/real\n[b]\nsource = s2\nreplica = {tmp_path}/link\n"
    with pytest.raises(ConfigError, match=r"have the same replica"):
        parse_config(text, folder=str(tmp_path))


def test_two_pairs_may_share_a_source() -> None:
    first, second = parse("[a]\nsource = /s\nreplica = /r1\n[b]\nsource = /s\nreplica = /r2\n")
    assert first.source == second.source


def test_a_missing_or_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.ini")
    assert (
        str(caught.value)
        == f"config file not found: {tmp_path}/nope.ini (give --ini FILE or set SYNCHRO_CONFIG)"
    )
    # A relative name: the folder it was looked for in is said.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config("backups.ini")
    assert str(caught.value) == (
        f"config file not found: backups.ini in {tmp_path} (give --ini FILE or set SYNCHRO_CONFIG)"
    )
    (tmp_path / "folder.ini").mkdir()
    with pytest.raises(ConfigError, match=r"^cannot read config file .*folder\.ini: "):
        load_config(tmp_path / "folder.ini")
    (tmp_path / "binary.ini").write_bytes(b"[a]\nsource = \xff\n")
    with pytest.raises(ConfigError, match=r"^cannot read config file .*binary\.ini: "):
        load_config(tmp_path / "binary.ini")
