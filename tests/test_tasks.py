"""The Invoke tasks, run as a user runs them: ``inv TASK ...`` in a subprocess.

What concerns flags and errors also runs through ``synchro-tasks``, the
installed command over the same collection (the ``face`` fixture); the
install itself, not editable, is tested in ``test_tasks_installed.py``.

Each test writes its own INI file and trees in ``tmp_path``. Where time
matters (``watch``, ``status``), a ``sitecustomize`` put on the child's
``PYTHONPATH`` starts a :mod:`time_machine` traveller at a given moment
and turns ``time.sleep`` into a shift of that traveller: the child believes
hours pass while the test takes milliseconds, and never waits. The last
test calls :mod:`synchro.faces.runner`, the library under the tasks, in process.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from synchro.faces import runner
from synchro.faces.api import Synchro
from synchro.faces.config import load_config

REPO = Path(__file__).resolve().parents[1]
INV = Path(sys.executable).parent / "inv"
SYNCHRO_TASKS = Path(sys.executable).parent / "synchro-tasks"
# How each face is started: Invoke's own program over the clone, and the installed command.
FACES = {"inv": [str(INV), "-r", str(REPO)], "synchro-tasks": [str(SYNCHRO_TASKS)]}
UTC = timezone.utc
T0 = datetime(2026, 3, 1, 3, 0, 0, tzinfo=UTC)

SITECUSTOMIZE = '''\
"""Test only: run at a chosen moment, and let sleeping move the clock instead of waiting."""
import os

if os.environ.get("SYNCHRO_TEST_NOW"):
    import datetime
    import time

    import time_machine

    _coordinates = time_machine.travel(
        datetime.datetime.fromisoformat(os.environ["SYNCHRO_TEST_NOW"]), tick=True
    ).start()
    _interrupt_after = int(os.environ.get("SYNCHRO_TEST_INTERRUPT_AFTER") or 0)
    _sleeps = []

    def _sleep(seconds):
        if seconds <= 0:
            return
        _sleeps.append(seconds)
        with open(os.environ["SYNCHRO_TEST_SLEEPS"], "a") as file:
            file.write(f"{seconds}\\n")
        if _interrupt_after and len(_sleeps) >= _interrupt_after:
            raise KeyboardInterrupt  # as Ctrl+C during the wait
        _coordinates.shift(seconds)

    time.sleep = _sleep
'''

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$")


class Inv:
    """Runs ``inv -r REPO ARGS`` (or ``synchro-tasks ARGS``) in ``tmp_path`` (or ``cwd``) with a clean environment."""

    def __init__(self, tmp_path: Path, face: str = "inv") -> None:
        self.face = face
        self.tmp_path = tmp_path
        self.site = tmp_path / "site"
        self.site.mkdir()
        (self.site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
        self.sleeps = tmp_path / "sleeps.txt"

    def __call__(
        self,
        *args: str,
        cwd: Path | None = None,
        now: datetime | None = None,
        interrupt_after: int = 0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        child = {
            key: value for key, value in os.environ.items() if not key.startswith(("SYNCHRO_", "INVOKE_"))
        }
        child.update(
            PYTHONPATH=os.pathsep.join([str(self.site), str(REPO)]),
            PYTHONIOENCODING="utf-8",
            TZ="UTC",
        )
        if now is not None:
            child.update(
                SYNCHRO_TEST_NOW=now.isoformat(),
                SYNCHRO_TEST_SLEEPS=str(self.sleeps),
                SYNCHRO_TEST_INTERRUPT_AFTER=str(interrupt_after),
            )
        child.update(env or {})
        return subprocess.run(
            [*FACES[self.face], *args],
            cwd=cwd or self.tmp_path,
            env=child,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def slept(self) -> list[float]:
        if not self.sleeps.exists():
            return []
        return [float(line) for line in self.sleeps.read_text(encoding="utf-8").split()]


@pytest.fixture
def inv(tmp_path: Path) -> Inv:
    return Inv(tmp_path)


@pytest.fixture(params=sorted(FACES))
def face(request: pytest.FixtureRequest, tmp_path: Path) -> Inv:
    """``inv`` in the clone, then ``synchro-tasks``."""
    return Inv(tmp_path, request.param)


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    root.mkdir(parents=True, exist_ok=True)
    return root


def files_of(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def ini(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def log_lines(logpath: Path) -> list[tuple[datetime, str]]:
    """(time, message) of every line of every daily log under ``logpath/LOGS``."""
    lines = []
    for path in sorted((logpath / "LOGS").glob("LOG-*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = STAMP.match(line)
            assert match, line
            lines.append((datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC), match[2]))
    return lines


def starts(logpath: Path, replica: Path) -> list[datetime]:
    return [
        when
        for when, message in log_lines(logpath)
        if message.startswith("START ") and f"replica={replica} " in message
    ]


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


DOCS = {"a.txt": "alpha", "sub/b.txt": "beta", ".hidden": "dot"}


@pytest.fixture
def two_pairs(tmp_path: Path) -> Path:
    """``docs`` and ``notes``, with their replicas (existing) and logs beside the INI."""
    tree(tmp_path / "docs", DOCS)
    tree(tmp_path / "notes", {"n.txt": "note"})
    (tmp_path / "mirror").mkdir()
    return ini(
        tmp_path / "backups.ini",
        """
[DEFAULT]
logpath = .

[docs]
source = docs
replica = mirror/docs
create_replica = yes

[notes]
source = notes
replica = mirror/notes
create_replica = yes
interval = 2
""",
    )


# --- the task list and the help ------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--list", "-l"])
def test_the_list_has_a_summary_for_every_task(face: Inv, flag: str) -> None:
    result = face(flag)
    assert result.returncode == 0, result.stderr
    for name in ("backup", "backup-all", "watch", "status", "pairs", "verify", "restore", "versions"):
        assert re.search(rf"^  {re.escape(name)} +\S", result.stdout, re.M), name


@pytest.mark.parametrize(
    ("task", "flags"),
    [
        (
            "backup",
            [
                "-p",
                "--pair",
                "--ini",
                "--dry-run",
                "--checksum",
                "--max-delete",
                "-v",
                "--verbose",
                "-q",
                "--quiet",
            ],
        ),
        (
            "backup-all",
            ["--ini", "--dry-run", "--checksum", "--max-delete", "-v", "--verbose", "-q", "--quiet"],
        ),
        (
            "watch",
            [
                "-p",
                "--pair",
                "-i",
                "--interval",
                "-m",
                "--max",
                "--ini",
                "--dry-run",
                "--checksum",
                "--max-delete",
                "-v",
                "--verbose",
                "-q",
                "--quiet",
            ],
        ),
        ("status", ["-j", "--json", "--ini"]),
        ("pairs", ["--ini"]),
        ("verify", ["-p", "--pair", "--ini"]),
        ("restore", ["-p", "--pair", "--path", "--at", "--to", "--force", "-v", "--verbose", "--ini"]),
        ("versions", ["-p", "--pair", "--path", "--ini"]),
    ],
)
def test_the_help_explains_every_flag(face: Inv, task: str, flags: list[str]) -> None:
    result = face("--help", task)
    assert result.returncode == 0, result.stderr
    docstring, options = result.stdout.split("Options:")
    assert docstring.split("Docstring:")[1].strip()
    entries = re.findall(r"^  (-\S.*?)(?:\s{2,}(\S.*))?$", options, re.M)
    shown = {flag for entry, _ in entries for flag in re.findall(r"(?:^|, )(--?[\w-]+)", entry)}
    assert set(flags) == shown
    assert all(text for _, text in entries), options  # every flag has a help text
    # None of Invoke's own short options is taken (-h help, -c collection, -f its configuration).
    assert not shown & {"-h", "-c", "-f", "-d", "-l", "-e", "-w", "-R", "-T", "-D", "-F", "-V"}


# What each flag's value is, in `synchro-tasks --help`; Invoke's own help (`inv`)
# knows only INT and STRING, so it shows STRING where these say more.
VALUES = {
    "--pair": "NAME",
    "--ini": "FILE",
    "--interval": "HOURS",
    "--max": "INT",
    "--max-delete": "N|P%",
    "--path": "PATH",
    "--at": "YYYY-MM-DD_HHMMSS",
    "--to": "FOLDER",
}
BOOLEANS = {"--json", "--dry-run", "--checksum", "--verbose", "--quiet", "--force"}


@pytest.mark.parametrize("task", ["backup", "backup-all", "watch", "status", "pairs", "restore", "versions"])
def test_the_help_shows_what_each_flag_takes(face: Inv, task: str) -> None:
    options = face("--help", task).stdout.split("Options:")[1]
    for entry in re.findall(r"^  (-\S.*?)(?:\s{2,}\S.*)?$", options, re.M):
        long_flag = re.search(r"--[\w-]+", entry)
        assert long_flag, entry
        name = long_flag.group(0)
        if name in BOOLEANS:
            assert "=" not in entry and " " not in entry.replace(", ", ""), entry  # a flag takes no value
            continue
        metavar = VALUES[name]
        if face.face == "inv":
            metavar = "INT" if metavar == "INT" else "STRING"
        assert f"{name}={metavar}" in entry, entry
        short = re.match(r"-(\w) ", entry)
        if short:
            assert entry.startswith(f"-{short.group(1)} {metavar}, "), entry


# --- backup -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "short-flag", "environment", "current-folder"])
def test_backup_mirrors_the_pair(inv: Inv, tmp_path: Path, two_pairs: Path, how: str) -> None:
    args, env = {
        "flag": (["--pair", "docs", "--ini", str(two_pairs)], {}),
        "short-flag": (["-p", "docs", f"--ini={two_pairs}"], {}),
        "environment": (["--pair", "docs"], {"SYNCHRO_CONFIG": str(two_pairs)}),
        "current-folder": (["--pair", "docs"], {}),
    }[how]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = inv("backup", *args, env=env, cwd=tmp_path if how == "current-folder" else elsewhere)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert files_of(tmp_path / "mirror" / "docs") == DOCS
    assert not (tmp_path / "mirror" / "notes").exists()
    assert " ADDED sub/b.txt\n" in result.stdout
    assert result.stdout.splitlines()[-1].startswith(
        "docs: ok: 4 added, 0 overwritten, 0 deleted, 0 failed, "
    )
    status = json.loads((tmp_path / "LOGS" / "status.json").read_text(encoding="utf-8"))
    assert list(status["pairs"]) == ["docs"]
    assert status["pairs"]["docs"]["last_run"]["exit_code"] == 0


def test_backup_flags_reach_the_mirror(inv: Inv, tmp_path: Path, two_pairs: Path) -> None:
    result = inv("backup", "--pair", "docs", "--dry-run", "-q")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not (tmp_path / "mirror" / "docs").exists()  # a dry run creates nothing
    assert "dry-run" in log_lines(tmp_path)[0][1]

    assert inv("backup", "--pair", "docs", "-q").returncode == 0
    # Same size, same time, new content: only --checksum sees it.
    copy = tmp_path / "mirror" / "docs" / "a.txt"
    stat = copy.stat()
    copy.write_text("ALPHA", encoding="utf-8")
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = inv("backup", "--pair", "docs", "--verbose")
    assert "OVERWRITTEN" not in result.stdout
    assert " UNTOUCHED a.txt\n" in result.stdout
    result = inv("backup", "--pair", "docs", "--checksum")
    assert " OVERWRITTEN a.txt\n" in result.stdout
    assert copy.read_text(encoding="utf-8") == "alpha"


def test_an_unknown_pair_names_the_pairs(inv: Inv, two_pairs: Path) -> None:
    line = one_line_error(inv("backup", "--pair", "photos"))
    assert line == "synchro: error: unknown pair 'photos' in backups.ini; its pairs are: docs, notes"
    line = one_line_error(inv("backup"))
    assert line == "synchro: error: give --pair NAME; the pairs are: docs, notes"
    line = one_line_error(inv("watch", "--pair", "photos", "--max", "1"))
    assert line.startswith("synchro: error: unknown pair 'photos'")


@pytest.mark.parametrize(
    ("task", "text", "expected"),
    [
        (
            ["backup-all"],
            None,
            "synchro: error: config file not found: backups.ini in {tmp_path} (give --ini FILE or set SYNCHRO_CONFIG)",
        ),
        (
            ["status"],
            "[docs\nsource = docs\n",
            "synchro: error: backups.ini:1: '[docs' is no section header: it needs a closing ]",
        ),
        (
            ["backup-all"],
            "[docs]\nsource = docs\nreplica = r\nmax_delet = 10\n",
            "synchro: error: backups.ini: [docs] unknown key 'max_delet' (did you mean 'max_delete'?)",
        ),
        (
            ["backup", "--pair", "docs"],
            "[docs]\nsource = docs\n",
            "synchro: error: backups.ini: [docs] replica: missing",
        ),
        (
            ["watch", "--max", "1"],
            "[docs]\nsource = docs\nreplica = r\nchecksum = often\n",
            "synchro: error: backups.ini: [docs] checksum: expected yes or no, got 'often'",
        ),
        (
            ["backup-all"],
            "[docs]\nsource = docs\nreplica = r\n[more]\nsource = notes\nreplica = r\n",
            "synchro: error: backups.ini: pairs [docs] and [more] have the same replica",
        ),
    ],
    ids=["missing", "malformed", "unknown-key", "no-replica", "bad-value", "same-replica"],
)
def test_a_bad_ini_is_one_line_and_touches_nothing(
    inv: Inv, tmp_path: Path, task: list[str], text: str | None, expected: str
) -> None:
    tree(tmp_path / "docs", DOCS)
    if text is not None:
        ini(tmp_path / "backups.ini", text)
    assert one_line_error(inv(*task)).startswith(expected.format(tmp_path=tmp_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["docs", "site"] + (["backups.ini"] if text is not None else [])
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["watch", "--max", "abc"], "synchro: error: --max: expected a whole number of cycles, got 'abc'"),
        (["watch", "-m", "2.5"], "synchro: error: --max: expected a whole number of cycles, got '2.5'"),
        (
            ["watch", "--max=-1"],
            "synchro: error: --max: expected a number of cycles >= 0 (0: until stopped), got '-1'",
        ),
        (
            ["watch", "--interval", "soon"],
            "synchro: error: --interval: expected a number of hours, got 'soon'",
        ),
        (
            ["watch", "--interval", "-1"],
            "synchro: error: --interval: expected a number of hours > 0, got '-1'",
        ),
        (
            ["backup-all", "--max-delete", "lots"],
            "synchro: error: --max-delete: expected a number N or a percentage P% (e.g. 50%), got 'lots'",
        ),
        (["backup-all", "-v", "-q"], "synchro: error: --verbose and --quiet exclude each other"),
    ],
)
def test_a_bad_flag_value_is_one_line(face: Inv, two_pairs: Path, args: list[str], expected: str) -> None:
    assert one_line_error(face(*args)) == expected
    assert not (two_pairs.parent / "mirror" / "docs").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["backup", "-p", "docs", "--bogus"], "synchro: error: No idea what '--bogus' is!"),
        (["backup-al"], "synchro: error: No idea what 'backup-al' is!"),
        (["watch", "--max"], "synchro: error: Flag --max needed value and was not given one!"),
        (["--help", "backup-al"], "synchro: error: No idea what 'backup-al' is!"),
    ],
    ids=["unknown-flag", "unknown-task", "missing-value", "help-of-unknown-task"],
)
def test_synchro_tasks_exits_2_on_what_it_cannot_parse(
    tmp_path: Path, two_pairs: Path, args: list[str], expected: str
) -> None:
    line = one_line_error(Inv(tmp_path, "synchro-tasks")(*args))
    assert line == f"{expected} (see synchro-tasks --help)"
    assert not (tmp_path / "mirror" / "docs").exists()


def test_inv_keeps_invokes_exit_1_for_what_it_cannot_parse(inv: Inv, two_pairs: Path) -> None:
    # Invoke's own program parses the line before any task runs, and exits 1:
    # the README says so, and points scripts at synchro-tasks.
    result = inv("backup", "-p", "docs", "--bogus")
    assert (result.returncode, result.stderr) == (1, "No idea what '--bogus' is!\n")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--config", "backups.ini", "backup-all"],
            "--config is Invoke's own option, for Invoke's configuration file; "
            "give the file of pairs with --ini backups.ini, after the task name",
        ),
        (
            ["backup-all", "--config", "backups.ini"],
            "--config is Invoke's own option, for Invoke's configuration file; "
            "give the file of pairs with --ini backups.ini, after the task name",
        ),
        (
            ["backup-all", "--config=backups.ini"],
            "--config is Invoke's own option, for Invoke's configuration file; "
            "give the file of pairs with --ini backups.ini, after the task name",
        ),
        (
            ["-f", "backups.ini", "backup-all"],
            "-f is Invoke's own option, for Invoke's configuration file; "
            "give the file of pairs with --ini backups.ini, after the task name",
        ),
        (
            ["backup-all", "-c", "backups.ini"],
            "-c is Invoke's own option, for a collection of tasks; "
            "give the file of pairs with --ini backups.ini, after the task name",
        ),
        (
            ["backup-all", "--dry"],
            "--dry is Invoke's own option (it echoes shell commands instead of running them, "
            "and the tasks run none); a dry run of a task is --dry-run, after the task name",
        ),
    ],
    ids=["config-before", "config-after", "config-equals", "f-before", "c-after", "dry"],
)
def test_invokes_own_options_meant_for_synchro_are_refused(
    face: Inv, tmp_path: Path, two_pairs: Path, args: list[str], expected: str
) -> None:
    # Unrefused, --config x.ini is Invoke's traceback about INI files, "-c x.ini"
    # after a task is silently ignored (the default file's pairs run), and --dry
    # runs the backup for real.
    assert one_line_error(face(*args)) == f"synchro: error: {expected}"
    assert not (tmp_path / "mirror" / "docs").exists()
    assert not (tmp_path / "LOGS").exists()


def test_synchro_tasks_refuses_c_before_the_task_too(tmp_path: Path, two_pairs: Path) -> None:
    # (Under inv, "-c x.ini" before the task makes Invoke look for a collection
    # of that name before it reads tasks.py: Invoke's own one-line error, exit 1.)
    line = one_line_error(Inv(tmp_path, "synchro-tasks")("-c", "backups.ini", "backup-all"))
    assert line.startswith("synchro: error: -c is Invoke's own option, for a collection of tasks; ")


def test_invokes_own_configuration_file_is_still_read_by_inv(
    inv: Inv, tmp_path: Path, two_pairs: Path
) -> None:
    # Only what cannot be Invoke's is refused: a YAML file is Invoke's configuration.
    (tmp_path / "invoke.yaml").write_text("tasks:\n  dedupe: false\n", encoding="utf-8")
    result = inv("--config", str(tmp_path / "invoke.yaml"), "pairs")
    assert result.returncode == 0, result.stderr
    assert "[docs] ok" in result.stdout


def test_relative_paths_are_relative_to_the_ini_folder(inv: Inv, tmp_path: Path) -> None:
    tree(tmp_path / "data" / "src", DOCS)
    config = ini(
        tmp_path / "conf" / "backups.ini",
        "[docs]\nsource = ../data/src\nreplica = replica\nlogpath = logs\ncreate_replica = yes\n",
    )
    cron_home = tmp_path / "home"  # cron starts in $HOME, not beside the INI
    cron_home.mkdir()
    result = inv("backup", "--pair", "docs", "--ini", "../conf/backups.ini", cwd=cron_home)
    assert result.returncode == 0, result.stderr
    assert files_of(tmp_path / "conf" / "replica") == DOCS
    assert (tmp_path / "conf" / "logs" / "LOGS" / "status.json").is_file()
    assert list(cron_home.iterdir()) == []
    assert config.is_file()


# --- backup-all ----------------------------------------------------------------------------


@pytest.fixture
def broken_pairs(tmp_path: Path) -> Path:
    """``docs`` fine, ``gone`` with no source (exit 2), ``guarded`` refused by the guard (3), ``notes`` fine."""
    tree(tmp_path / "docs", DOCS)
    tree(tmp_path / "notes", {"n.txt": "note"})
    tree(tmp_path / "few", {"one.txt": "1"})
    tree(tmp_path / "mirror" / "guarded", {f"old{i:02}.txt": "old" for i in range(20)})
    return ini(
        tmp_path / "backups.ini",
        """
[DEFAULT]
create_replica = yes

[docs]
source = docs
replica = mirror/docs

[gone]
source = not-mounted
replica = mirror/gone

[guarded]
source = few
replica = mirror/guarded

[notes]
source = notes
replica = mirror/notes
""",
    )


def test_backup_all_runs_every_pair_and_exits_with_the_worst_code(
    inv: Inv, tmp_path: Path, broken_pairs: Path
) -> None:
    result = inv("backup-all")
    assert result.returncode == 3, result.stderr
    assert files_of(tmp_path / "mirror" / "docs") == DOCS
    assert files_of(tmp_path / "mirror" / "notes") == {"n.txt": "note"}
    assert len(files_of(tmp_path / "mirror" / "guarded")) == 20  # nothing deleted
    tail = result.stdout.splitlines()[-4:]
    assert tail[0].startswith("docs: ok: 4 added, ")
    assert tail[0].endswith(" (exit 0)")
    assert tail[1].startswith("gone: error: source folder does not exist: ")
    assert tail[1].endswith("not-mounted (exit 2)")
    assert tail[2].startswith(
        "guarded: refused: deletion guard: this run would delete 20 of the replica's 20 files"
    )
    assert tail[2].endswith(" (exit 3)")
    assert tail[3].startswith("notes: ok: 1 added, ")
    assert "Traceback" not in result.stderr
    status = json.loads((tmp_path / "LOGS" / "status.json").read_text(encoding="utf-8"))["pairs"]
    assert {name: entry["last_run"]["exit_code"] for name, entry in status.items()} == {
        "docs": 0,
        "gone": 2,
        "guarded": 3,
        "notes": 0,
    }


def test_backup_all_quiet_prints_only_the_failures(inv: Inv, tmp_path: Path, broken_pairs: Path) -> None:
    result = inv("backup-all", "-q")
    assert result.returncode == 3
    assert result.stdout == ""
    # The refused run's own lines (its START, the REFUSED lines, its SUMMARY), then one
    # line for each pair that failed; nothing of the pairs that went well.
    lines = result.stderr.splitlines()
    runs = [line[20:].split(" ", 1)[0] for line in lines[:-2]]
    assert runs == ["START"] + ["REFUSED"] * 12 + ["SUMMARY"]
    assert f"replica={tmp_path}/mirror/guarded " in lines[0]
    assert [line.split(":")[0] for line in lines[-2:]] == ["gone", "guarded"]
    assert files_of(tmp_path / "mirror" / "notes") == {"n.txt": "note"}


def test_backup_all_of_good_pairs_exits_0(inv: Inv, tmp_path: Path, two_pairs: Path) -> None:
    result = inv("backup-all", "--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert files_of(tmp_path / "mirror" / "notes") == {"n.txt": "note"}


# --- watch ----------------------------------------------------------------------------------


def test_watch_runs_each_pair_at_its_interval_and_stops_after_max(
    inv: Inv, tmp_path: Path, two_pairs: Path
) -> None:
    # docs every 24 h (the default), notes every 2 h: three cycles each.
    ini(two_pairs, two_pairs.read_text(encoding="utf-8").replace("[docs]\n", "[docs]\ninterval = 1\n"))
    result = inv("watch", "--max", "3", "-q", now=T0)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    docs, notes = (
        starts(tmp_path, tmp_path / "mirror" / "docs"),
        starts(tmp_path, tmp_path / "mirror" / "notes"),
    )
    assert len(docs) == len(notes) == 3
    assert docs[0] - T0 < timedelta(seconds=30)
    assert [round((b - a) / timedelta(hours=1), 2) for a, b in itertools.pairwise(docs)] == [1.0, 1.0]
    assert [round((b - a) / timedelta(hours=1), 2) for a, b in itertools.pairwise(notes)] == [2.0, 2.0]
    # It waited 1 h, 1 h, then 2 h for the last notes cycle, and not after it.
    # (Each pair's next run counts from the end of its cycle, so two pairs due
    # "together" may be milliseconds apart: a wait that short is no wait.)
    assert [round(seconds / 3600, 2) for seconds in inv.slept() if seconds >= 1] == [1.0, 1.0, 2.0]
    assert round(sum(inv.slept()) / 3600, 2) == 4.0
    messages = [message for _, message in log_lines(tmp_path)]
    assert "ONGOING watch pair=docs every 1 h, 3 cycles" in messages
    assert "ONGOING watch pair=notes every 2 h, 3 cycles" in messages


def test_watch_interval_overrides_and_is_raised_to_the_minimum(
    inv: Inv, tmp_path: Path, two_pairs: Path
) -> None:
    result = inv("watch", "--pair", "notes", "--interval", "0.1", "--max", "2", now=T0)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("notes: ok: 0 added, ")
    messages = [message for _, message in log_lines(tmp_path)]
    assert "WARNING interval 0.1 h is below the minimum; raised to 0.25 h" in messages
    assert "ONGOING watch pair=notes every 0.25 h, 2 cycles" in messages
    notes = starts(tmp_path, tmp_path / "mirror" / "notes")
    assert len(notes) == 2
    assert round((notes[1] - notes[0]) / timedelta(minutes=1)) == 15
    assert starts(tmp_path, tmp_path / "mirror" / "docs") == []
    assert [round(seconds) for seconds in inv.slept()] == [900]


def test_watch_goes_on_when_a_cycle_fails(inv: Inv, tmp_path: Path, broken_pairs: Path) -> None:
    result = inv("watch", "--max", "2", now=T0)
    assert result.returncode == 3
    messages = [message for _, message in log_lines(tmp_path)]
    assert sum(message.startswith("ERROR source folder does not exist: ") for message in messages) == 2
    assert sum(message.startswith("REFUSED deletion guard: ") for message in messages) == 2
    assert len(starts(tmp_path, tmp_path / "mirror" / "notes")) == 2
    tail = result.stdout.splitlines()[-4:]
    assert [line.split(":")[:2] for line in tail] == [
        ["docs", " ok"],
        ["gone", " error"],
        ["guarded", " refused"],
        ["notes", " ok"],
    ]


def test_ctrl_c_stops_watch_with_130(inv: Inv, tmp_path: Path, two_pairs: Path) -> None:
    result = inv("watch", now=T0, interrupt_after=1)
    assert result.returncode == 130
    assert result.stderr == "synchro: interrupted\n"
    messages = [message for _, message in log_lines(tmp_path)]
    # Both pairs log into the same folder: it is said once.
    assert messages.count("INTERRUPTED watch stopped by Ctrl+C") == 1
    assert messages[-1] == "INTERRUPTED watch stopped by Ctrl+C"
    assert files_of(tmp_path / "mirror" / "docs") == DOCS


# --- status and pairs ---------------------------------------------------------------------------


@pytest.fixture
def four_pairs(tmp_path: Path) -> Path:
    tree(tmp_path / "docs", DOCS)
    tree(tmp_path / "notes", {"n.txt": "note"})
    (tmp_path / "mirror").mkdir()  # the replicas' parent: create_replica makes the last folder only
    return ini(
        tmp_path / "backups.ini",
        """
[DEFAULT]
create_replica = yes

[daily]
source = docs
replica = mirror/daily

[hourly]
source = notes
replica = mirror/hourly
interval = 1

[broken]
source = not-mounted
replica = mirror/broken

[new]
source = docs
replica = mirror/new
""",
    )


def test_status_after_runs_flags_the_stale_pairs(inv: Inv, tmp_path: Path, four_pairs: Path) -> None:
    for name in ("daily", "hourly", "broken"):
        inv("backup", "--pair", name, "-q", now=T0)
    inv("backup", "--pair", "hourly", "--dry-run", "-q", now=T0 + timedelta(hours=2))

    # A minute past, so that "3 h ago" does not depend on how long the runs took.
    later = T0 + timedelta(hours=3, minutes=1)
    result = inv("status", now=later)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert re.fullmatch(
        r"pair +last run +result +added +overwritten +deleted +failed +bytes +last success", header
    )
    table = {row.split()[0]: row for row in rows}
    assert re.fullmatch(
        r"daily +2026-03-01 03:00 \(3 h ago\) +ok +4 +0 +0 +0 +12 B +2026-03-01 03:00 \(3 h ago\)",
        table["daily"],
    ), table["daily"]
    # Last success 3 h ago, more than twice its hour; the dry run since is no backup.
    assert re.fullmatch(
        r"hourly +2026-03-01 05:00 \(1 h ago\) +ok \(dry run\) +0 +0 +0 +0 +0 B +2026-03-01 03:00 \(3 h ago\) +STALE",
        table["hourly"],
    ), table["hourly"]
    assert re.fullmatch(
        r"broken +2026-03-01 03:00 \(3 h ago\) +error +0 +0 +0 +0 +0 B +never +STALE", table["broken"]
    )
    assert re.fullmatch(r"new +never +- +never +STALE", table["new"])

    result = inv("status", "--json", now=later)
    assert result.returncode == 0, result.stderr
    rows_json = {row["pair"]: row for row in json.loads(result.stdout)}
    assert list(rows_json) == ["daily", "hourly", "broken", "new"]
    assert {name: row["stale"] for name, row in rows_json.items()} == {
        "daily": False,
        "hourly": True,
        "broken": True,
        "new": True,
    }
    daily = rows_json["daily"]
    assert daily["last_success"] == "2026-03-01T03:00:00+00:00"
    assert abs(daily["last_success_ago_seconds"] - (3 * 3600 + 60)) < 30
    assert daily["last_run"]["counts"]["added"] == 4
    assert daily["interval_hours"] == 24
    broken = rows_json["broken"]["last_run"]
    assert (broken["exit_code"], broken["result"]) == (2, "error")
    assert broken["message"].startswith("source folder does not exist: ")
    assert rows_json["new"]["last_run"] is None

    # A day later the daily pair is still fresh; two days later it is stale.
    for hours, stale in [(47, False), (49, True)]:
        result = inv("status", "-j", now=T0 + timedelta(hours=hours))
        assert {row["pair"]: row["stale"] for row in json.loads(result.stdout)}["daily"] is stale


def test_pairs_lists_and_checks_without_running(inv: Inv, tmp_path: Path, four_pairs: Path) -> None:
    result = inv("pairs")
    assert result.returncode == 2  # the broken pair
    assert result.stdout.splitlines()[:6] == [
        "[daily] ok (the replica will be created by the first run)",
        f"    source   {tmp_path}/docs",
        f"    replica  {tmp_path}/mirror/daily",
        f"    logs     {tmp_path}/LOGS",
        "    every    24 h",
        "    options  max_delete=50% create_replica",
    ]
    assert f"[broken] error: source folder does not exist: {tmp_path}/not-mounted" in result.stdout
    assert os.listdir(tmp_path / "mirror") == []  # no replica made
    assert not (tmp_path / "LOGS").exists()


def test_pairs_of_a_good_file_exit_0(inv: Inv, two_pairs: Path) -> None:
    result = inv("pairs")
    assert result.returncode == 0, result.stderr
    assert "[docs] ok" in result.stdout
    assert "[notes] ok" in result.stdout


# --- --max-delete -------------------------------------------------------------------------------


def test_after_a_guard_refusal_max_delete_lets_the_deletions_through(
    inv: Inv, tmp_path: Path, broken_pairs: Path
) -> None:
    result = inv("backup", "--pair", "guarded")
    assert result.returncode == 3
    # The refusal names the flag; the task has it.
    assert "rerun with a higher --max-delete (100% lifts the limit)" in result.stdout
    assert len(files_of(tmp_path / "mirror" / "guarded")) == 20

    result = inv("backup", "--pair", "guarded", "--max-delete", "19")
    assert result.returncode == 3  # 20 deletions, 19 allowed
    assert "(limit 19)" in result.stdout
    assert len(files_of(tmp_path / "mirror" / "guarded")) == 20

    result = inv("backup", "--pair", "guarded", "--max-delete", "100%")
    assert result.returncode == 0, result.stdout + result.stderr
    assert files_of(tmp_path / "mirror" / "guarded") == {"one.txt": "1"}
    assert result.stdout.splitlines()[-1].startswith("guarded: ok: 1 added, 0 overwritten, 20 deleted, ")


@pytest.mark.parametrize("task", [["backup-all"], ["watch", "--max", "1"]])
def test_max_delete_applies_to_every_pair_of_the_run(
    inv: Inv, tmp_path: Path, broken_pairs: Path, task: list[str]
) -> None:
    result = inv(*task, "--max-delete", "20", "-q", now=T0)
    assert result.returncode == 2  # the pair with no source; nobody refused
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == ["gone"]
    assert files_of(tmp_path / "mirror" / "guarded") == {"one.txt": "1"}
    # A limit of 0 refuses any deletion, whatever the pair's own limit says.
    tree(tmp_path / "docs", {"a.txt": "alpha"})
    (tmp_path / "docs" / "sub" / "b.txt").unlink()
    result = inv("backup", "--pair", "docs", "--max-delete", "0", "-q")
    assert result.returncode == 3
    assert (tmp_path / "mirror" / "docs" / "sub" / "b.txt").exists()


# --- INI files as users write them ----------------------------------------------------------------


def test_an_ini_saved_with_a_byte_order_mark_is_read(inv: Inv, tmp_path: Path, two_pairs: Path) -> None:
    # Notepad's "UTF-8": a BOM before [DEFAULT].
    two_pairs.write_text(two_pairs.read_text(encoding="utf-8").lstrip(), encoding="utf-8-sig")
    assert two_pairs.read_bytes().startswith(b"\xef\xbb\xbf[DEFAULT]")
    result = inv("pairs")
    assert result.returncode == 0, result.stderr
    result = inv("backup", "--pair", "docs", "-q")
    assert (result.returncode, result.stderr) == (0, "")
    assert files_of(tmp_path / "mirror" / "docs") == DOCS


def test_an_exclude_line_with_commas_is_warned_about(inv: Inv, tmp_path: Path) -> None:
    tree(tmp_path / "docs", {"a.txt": "a", "b.tmp": "t", "c.bak": "b"})
    ini(
        tmp_path / "backups.ini",
        "[docs]\nsource = docs\nreplica = r\ncreate_replica = yes\nexclude = *.tmp, *.bak\n",
    )
    warning = (
        "exclude pattern '*.tmp, *.bak' holds ', ' so it is one pattern, which leaves out only names with "
        "that comma; give one pattern per line in the INI file (exclude = then each indented on its own "
        "line), one --exclude per pattern, or a list in Python"
    )
    result = inv("pairs")
    assert result.returncode == 0, result.stderr
    assert f"    warning  {warning}" in result.stdout.splitlines()
    result = inv("backup", "--pair", "docs")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].endswith(f" WARNING {warning}")
    assert f"WARNING {warning}" in [message for _, message in log_lines(tmp_path)]
    assert sorted(files_of(tmp_path / "r")) == ["a.txt", "b.tmp", "c.bak"]


def test_a_section_almost_named_default_gets_a_hint(inv: Inv, tmp_path: Path) -> None:
    tree(tmp_path / "docs", DOCS)
    ini(tmp_path / "backups.ini", "[DEFAUL]\ncreate_replica = yes\n[docs]\nsource = docs\nreplica = r\n")
    line = one_line_error(inv("backup-all"))
    assert line == (
        "synchro: error: backups.ini: [DEFAUL] source: missing; every pair needs a source and a replica "
        "(did you mean [DEFAULT]?)"
    )
    assert not (tmp_path / "r").exists()


@pytest.fixture
def usb_pair(tmp_path: Path, two_pairs: Path) -> Path:
    """``two_pairs`` and, between them, ``usb``, whose replica is under ``$USB_DRIVE``."""
    text = two_pairs.read_text(encoding="utf-8").replace(
        "[notes]", "[usb]\nsource = docs\nreplica = $USB_DRIVE/docs\ncreate_replica = yes\n\n[notes]"
    )
    return ini(two_pairs, text)


USB_ERROR = "backups.ini: [usb] replica: environment variable $USB_DRIVE is not set (in '$USB_DRIVE/docs')"


def test_status_shows_the_other_pairs_when_one_has_an_unset_variable(
    face: Inv, tmp_path: Path, usb_pair: Path
) -> None:
    (tmp_path / "drive").mkdir()
    for name in ("docs", "usb"):
        result = face("backup", "--pair", name, "-q", now=T0, env={"USB_DRIVE": str(tmp_path / "drive")})
        assert result.returncode == 0, result.stderr

    result = face("status", now=T0 + timedelta(hours=1))
    assert result.returncode == 2
    assert result.stderr == f"synchro: error: {USB_ERROR}\n"
    table = {row.split()[0]: row for row in result.stdout.splitlines()[1:]}
    assert list(table) == ["docs", "usb", "notes"]
    assert re.fullmatch(r"docs +2026-03-01 03:00 \(1 h ago\) +ok +4 .*", table["docs"]), table["docs"]
    assert re.fullmatch(r"usb +- +config error +- +STALE", table["usb"])
    assert re.fullmatch(r"notes +never +- +never +STALE", table["notes"])

    result = face("status", "--json", now=T0 + timedelta(hours=1))
    assert result.returncode == 2
    rows = {row["pair"]: row for row in json.loads(result.stdout)}
    assert rows["usb"]["error"] == USB_ERROR.split("[usb] ")[1]
    assert rows["docs"]["error"] is None
    assert rows["docs"]["last_run"]["counts"]["added"] == 4


def test_pairs_shows_the_other_pairs_when_one_has_an_unset_variable(
    face: Inv, tmp_path: Path, usb_pair: Path
) -> None:
    result = face("pairs")
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert "[docs] ok (the replica will be created by the first run)" in lines
    assert "[usb] error: replica: environment variable $USB_DRIVE is not set (in '$USB_DRIVE/docs')" in lines
    assert "[notes] ok (the replica will be created by the first run)" in lines
    assert result.stderr == ""


def test_runs_still_refuse_a_file_with_an_unset_variable(inv: Inv, tmp_path: Path, usb_pair: Path) -> None:
    result = inv("backup", "--pair", "docs", "-q")
    # The runs read the whole file strictly (README: a mistake stops the tasks
    # before anything is touched), so the one-pair run is refused too.
    assert one_line_error(result) == f"synchro: error: {USB_ERROR}"
    assert one_line_error(inv("backup-all")) == f"synchro: error: {USB_ERROR}"
    assert not (tmp_path / "mirror" / "docs").exists()


# --- the shipped example ------------------------------------------------------------------------


def test_the_shipped_demo_pair_is_valid(inv: Inv) -> None:
    result = inv("pairs", "--ini", str(REPO / "backups.ini"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("[demo] ok")
    assert f"    source   {REPO}/demo/source\n" in result.stdout


# --- the library under the tasks --------------------------------------------------------------


def test_an_unexpected_os_error_fails_one_pair_and_the_others_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(tmp_path / "docs", DOCS)
    config = load_config(
        ini(
            tmp_path / "backups.ini",
            "[DEFAULT]\ncreate_replica = yes\n[first]\nsource = docs\nreplica = r1\n"
            "[second]\nsource = docs\nreplica = r2\n",
        )
    )
    real_run = Synchro.run

    def run_once_broken(self: Synchro) -> object:
        assert self.pair is not None
        if self.pair.name == "first":
            raise OSError(5, "Input/output error", "/dev/sdb1")
        return real_run(self)

    monkeypatch.setattr(Synchro, "run", run_once_broken)
    errors = io.StringIO()
    results = runner.backup(config.pairs, runner.RunSettings(quiet=True), errors=errors)
    assert [result.exit_code for result in results] == [1, 0]
    assert results[0].line == "first: failed: Input/output error: /dev/sdb1 (exit 1)"
    assert errors.getvalue() == "synchro: [first] Input/output error: /dev/sdb1\n"
    assert files_of(tmp_path / "r2") == DOCS
    assert runner.worst_code(results) == 1
