"""The daily log (README: "The daily log"): its lines, its files, its sharing."""

from __future__ import annotations

import fcntl
import io
import logging
import multiprocessing
import os
import re
import signal
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType

import pytest
from conftest import Pair, run_synchro
from test_tasks import Inv, files_of, ini, tree
from treeutil import (
    BASE_NS,
    Link,
    build,
    entries,
    join,
    log_file,
    log_lines,
    log_messages,
    strip_stamp,
    summary,
    write,
)

import synchro
import synchro.pipeline.log
from synchro import Hooks, Synchro
from synchro.pipeline.lock import FileLock
from synchro.pipeline.plan import Action, Op

WORDS = "START|ADDED|OVERWRITTEN|DELETED|FAILED|SKIPPED|VANISHED|UNTOUCHED|SUMMARY|ERROR|REFUSED|LOCKED|CREATED|WARNING|ONGOING|INTERRUPTED"
LINE = re.compile(rf"^\d{{4}}-\d{{2}}-\d{{2}} \d{{2}}:\d{{2}}:\d{{2}} ({WORDS}) \S")
SUMMARY = re.compile(
    r"^SUMMARY added=\d+ overwritten=\d+ deleted=\d+ untouched=\d+ failed=\d+ skipped=\d+ "
    r"vanished=\d+ bytes=\d+ seconds=\d+\.\d{3} exit=\d+$"
)


class Clock:
    """An injectable clock that tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_every_line_has_a_timestamp_a_word_and_the_file_follows_the_date(pair: Pair) -> None:
    build(pair.src, {"new": "n", "changed": "2", "sub": {"f": "f"}}, mtime_ns=BASE_NS)
    write(pair.rep / "changed", "1", BASE_NS - 1)
    write(pair.rep / "gone", "g", BASE_NS)
    clock = Clock(datetime(2026, 3, 1, 12, 34, 56))

    with Synchro(pair.logs, quiet=True, clock=clock) as api:
        api.configure(pair.src, pair.rep)
        api.run()

    path = pair.logs / "LOGS" / "LOG-2026-03-01.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(line.startswith("2026-03-01 12:34:56 ") for line in lines)
    assert all(LINE.match(line) for line in lines), lines
    messages = [line[20:] for line in lines]
    assert messages[0] == f"START source={pair.src} replica={pair.rep} mode=single"
    assert sorted(messages[1:-1]) == [
        "ADDED new",
        "ADDED sub/",
        "ADDED sub/f",
        "DELETED gone",
        "OVERWRITTEN changed",
    ]
    assert SUMMARY.match(messages[-1])
    assert re.sub(r"seconds=\S+", "seconds=S", messages[-1]) == summary(
        added=3, overwritten=1, deleted=1, nbytes=3
    )
    assert path.read_bytes().endswith(b"\n")


def test_the_log_folder_is_created_when_missing(pair: Pair) -> None:
    logpath = pair.root / "not" / "yet"
    write(pair.src / "f", "f")

    synchro.mirror(pair.src, pair.rep, logpath=logpath)

    assert log_messages(logpath)[1] == "ADDED f"


# --- escaping: one entry, one line, no control sequence ---------------------------------

NAMES = [
    pytest.param(b"new\nline", "new\\x0aline", id="newline"),
    pytest.param(b"carriage\rreturn", "carriage\\x0dreturn", id="carriage-return"),
    pytest.param(b"\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred", id="escape-sequence"),
    pytest.param(b"tab\tbed", "tab\\x09bed", id="tab"),
    pytest.param(b"bell\x07", "bell\\x07", id="bell"),
    pytest.param(b"del\x7f", "del\\x7f", id="delete"),
    pytest.param(b"back\\slash", "back\\\\slash", id="backslash"),
    pytest.param(b"looks\\x41escaped", "looks\\\\x41escaped", id="backslash-x-text"),
    pytest.param(b"latin1-\xe9t\xe9", "latin1-\\xe9t\\xe9", id="not-utf8"),
    pytest.param(b"\xff\xfe", "\\xff\\xfe", id="only-bad-bytes"),
    pytest.param("c1-\u0085next".encode(), "c1-\\x85next", id="c1-control"),
    pytest.param("line\u2028separator".encode(), "line\\u2028separator", id="unicode-line-separator"),
    pytest.param("bidi\u202eexe.txt".encode(), "bidi\\u202eexe.txt", id="bidi-override"),
    pytest.param("zero\u200bwidth".encode(), "zero\\u200bwidth", id="zero-width-space"),
    pytest.param("ok ünïcødé 日本 😀".encode(), "ok ünïcødé 日本 😀", id="printable-unicode-kept"),
]


@pytest.mark.parametrize(("raw", "shown"), NAMES)
def test_names_are_escaped_into_one_line(pair: Pair, raw: bytes, shown: str) -> None:
    os.mkdir(join(pair.src, raw))
    write(join(pair.src, raw, raw), "x")
    os.symlink(raw, join(pair.src, b"link"))
    console = io.StringIO()

    with Synchro(pair.logs, console=console) as api:
        api.configure(pair.src, pair.rep)
        api.run()

    data = log_file(pair.logs).read_bytes()
    lines = data.decode("utf-8").split("\n")
    assert lines[-1] == ""  # the file ends with a newline, and every line is whole:
    assert len(lines) - 1 == 5  # START, 3 entries, SUMMARY
    assert sorted(strip_stamp(line) for line in lines[1:-2]) == sorted(
        [f"ADDED {shown}/", f"ADDED {shown}/{shown}", "ADDED link"]
    )
    assert not any(
        ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in data.decode("utf-8").replace("\n", "")
    )
    assert console.getvalue().encode("utf-8") == data  # the console shows the same safe lines
    assert os.readlink(join(pair.rep, b"link")) == raw


def test_a_source_path_with_control_characters_is_escaped_in_the_start_line(tmp_path: Path) -> None:
    source = join(tmp_path, b"evil\nSUMMARY added=0")
    os.mkdir(source)
    replica = tmp_path / "rep"
    replica.mkdir()

    synchro.mirror(os.fsdecode(source), replica, logpath=tmp_path)

    assert (
        log_messages(tmp_path)[0]
        == f"START source={tmp_path}/evil\\x0aSUMMARY added=0 replica={replica} mode=single"
    )


def test_an_error_message_with_control_characters_is_escaped(tmp_path: Path) -> None:
    missing = os.fsdecode(join(tmp_path, b"gone\n\x1b[31m"))

    report = synchro.mirror(missing, tmp_path, logpath=tmp_path / "logs")

    assert report.exit_code == 2
    assert (
        log_messages(tmp_path / "logs")[1]
        == f"ERROR source folder does not exist: {tmp_path}/gone\\x0a\\x1b[31m"
    )


# --- dates: a run across midnight ------------------------------------------------------------


def test_a_run_across_midnight_continues_in_the_next_days_file(pair: Pair) -> None:
    build(pair.src, {"a": "1", "b": "2", "c": "3"})
    clock = Clock(datetime(2026, 3, 1, 23, 59, 59))
    seen: list[str] = []

    def before_action(action: Action) -> None:
        if action.op is not Op.COPY:
            return
        seen.append(action.path)
        if len(seen) == 2:  # midnight strikes during the run
            clock.now += timedelta(seconds=2)

    with Synchro(pair.logs, quiet=True, clock=clock, hooks=Hooks(before_action=before_action)) as api:
        api.configure(pair.src, pair.rep)
        api.run()

    first = log_lines(pair.logs, datetime(2026, 3, 1).date())
    second = log_lines(pair.logs, datetime(2026, 3, 2).date())
    assert [line[:20] for line in first] == ["2026-03-01 23:59:59 "] * 2
    assert [line[:20] for line in second] == ["2026-03-02 00:00:01 "] * 3
    assert strip_stamp(first[0]).startswith("START ")
    assert [strip_stamp(line) for line in first[1:] + second[:-1]] == [f"ADDED {path}" for path in seen]
    assert strip_stamp(second[-1]).startswith("SUMMARY added=3 ")


# --- verbose and quiet ------------------------------------------------------------------------


@pytest.mark.parametrize("verbose", [False, True], ids=["normal", "verbose"])
def test_untouched_entries_are_counted_always_and_listed_when_verbose(pair: Pair, verbose: bool) -> None:
    build(pair.src, {"a": "1", "sub": {"b": "2", "l": Link("b")}}, mtime_ns=BASE_NS)
    pair.mirror()
    write(pair.src / "c", "3", BASE_NS)
    os.utime(pair.src, ns=(BASE_NS, BASE_NS))
    console = io.StringIO()
    start = len(log_messages(pair.logs))

    with Synchro(pair.logs, verbose=verbose, console=console) as api:
        api.configure(pair.src, pair.rep)
        report = api.run()

    messages = log_messages(pair.logs)[start:]
    untouched = ["UNTOUCHED a", "UNTOUCHED sub/", "UNTOUCHED sub/b", "UNTOUCHED sub/l"]
    assert report.untouched_count == 4
    assert sorted(report.untouched) == (sorted(line[10:] for line in untouched) if verbose else [])
    assert sorted(entries(messages)) == sorted(["ADDED c", *(untouched if verbose else [])])
    assert messages[-1] == summary(added=1, untouched=4, nbytes=1)
    assert len(console.getvalue().splitlines()) == len(messages)


def test_quiet_prints_nothing_and_still_logs(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    write(pair.src / "f", "f")

    with Synchro(pair.logs, quiet=True) as api:
        api.configure(pair.src, pair.rep)
        api.run()

    assert capsys.readouterr().out == ""
    assert log_messages(pair.logs)[1] == "ADDED f"


def test_the_console_shows_the_log_lines_on_stdout(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    write(pair.src / "f", "f")

    with Synchro(pair.logs) as api:
        api.configure(pair.src, pair.rep)
        api.run()

    assert capsys.readouterr().out.splitlines() == log_lines(pair.logs)


def test_lines_also_go_to_the_synchro_logger_and_logging_is_left_alone(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    write(pair.src / "f", "f")
    root_handlers = list(logging.getLogger().handlers)
    caplog.set_level(logging.INFO, logger="synchro")

    synchro.mirror(pair.src, pair.rep)  # no log file, no console: the logger still has it

    assert [record.getMessage() for record in caplog.records][1] == "ADDED f"
    assert all(record.name == "synchro" for record in caplog.records)
    assert logging.getLogger().handlers == root_handlers
    assert logging.getLogger("synchro").handlers == []


# --- many processes, one log --------------------------------------------------------------------

PROCESSES = 6
FILES = 600  # more than one batch of lines per process


def _mirror_many(source: str, replica: str, logpath: str) -> None:
    report = synchro.mirror(source, replica, logpath=logpath)
    os._exit(int(report.exit_code))


def test_many_processes_append_to_one_log_without_cutting_lines(tmp_path: Path) -> None:
    long = "x" * 120  # long lines: a torn or interleaved write would show
    for index in range(PROCESSES):
        os.makedirs(tmp_path / f"src{index}")
        os.makedirs(tmp_path / f"rep{index}")
        build(tmp_path / f"src{index}", {f"p{index}-{number:04d}-{long}": "" for number in range(FILES)})
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_mirror_many, args=(f"{tmp_path}/src{i}", f"{tmp_path}/rep{i}", str(tmp_path)))
        for i in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    lines = log_lines(tmp_path)
    assert len(lines) == PROCESSES * (FILES + 2)
    assert all(LINE.match(line) for line in lines), [line for line in lines if not LINE.match(line)][:3]
    messages = [strip_stamp(line) for line in lines]
    for index in range(PROCESSES):
        added = {m for m in messages if m.startswith(f"ADDED p{index}-")}
        assert added == {f"ADDED p{index}-{number:04d}-{long}" for number in range(FILES)}
    assert sum(1 for m in messages if SUMMARY.match(m)) == PROCESSES


def test_ctrl_c_while_the_log_is_being_written_loses_no_line(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl+C can come while the batch waits for the log's lock (another process holds it)."""
    write(pair.src / "f", "f")
    (pair.logs / "LOGS").mkdir()
    # Another writer: a second open file of the lock counts as one for flock.
    holder = [os.open(pair.logs / "LOGS" / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)]
    fcntl.flock(holder[0], fcntl.LOCK_EX)
    interruptions: list[bool] = []

    def release() -> None:
        while holder:
            os.close(holder.pop())

    def ctrl_c(signum: int, frame: FrameType | None) -> None:
        interruptions.append(bool(holder))  # the run was still waiting for the lock
        release()
        raise KeyboardInterrupt

    class InterruptedOnce(FileLock):
        def acquire(self) -> None:
            if not interruptions:  # Ctrl+C once this run blocks in the wait
                signal.setitimer(signal.ITIMER_REAL, 0.1)
            super().acquire()

    monkeypatch.setattr(synchro.pipeline.log, "FileLock", InterruptedOnce)
    previous = signal.signal(signal.SIGALRM, ctrl_c)
    try:
        api = Synchro(pair.logs, quiet=True)
        api.configure(pair.src, pair.rep)
        with pytest.raises(KeyboardInterrupt):
            api.run()  # the first batch (the whole run) is interrupted
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        release()
    api.close_api()  # what a script's `finally` or `with` does next

    assert interruptions == [True]
    assert log_messages(pair.logs) == [
        f"START source={pair.src} replica={pair.rep} mode=single",
        "ADDED f",
        summary(added=1, nbytes=1),
    ]


def test_ctrl_c_just_after_a_line_is_shown_still_logs_it(pair: Pair) -> None:
    """What the console showed, the file has: an unbuffered console shows a line
    at once, and Ctrl+C may come right then."""
    write(pair.src / "f", "f")

    class InterruptAfterSummary(io.StringIO):
        def write(self, text: str) -> int:
            written = super().write(text)
            if " SUMMARY " in text:
                raise KeyboardInterrupt
            return written

    console = InterruptAfterSummary()
    api = Synchro(pair.logs, console=console)
    api.configure(pair.src, pair.rep)

    with pytest.raises(KeyboardInterrupt):
        api.run()
    api.close_api()

    assert [line[20:] for line in console.getvalue().splitlines()] == [
        line[20:] for line in log_lines(pair.logs)
    ]
    assert log_messages(pair.logs)[-1] == summary(added=1, nbytes=1)


@pytest.mark.parametrize(
    "logpath", [".", "./", "logs", "logs/", "a//b", "./a/./b/", "/", "/var//log/", "a/../b", "~", "~/logs"]
)
def test_the_log_folder_is_spelled_as_pathlib_spells_it(logpath: str) -> None:
    """Messages and ``inv`` listings show the folder as they did when it was a Path."""
    assert synchro.pipeline.log.log_dir(logpath) == str(Path(logpath).expanduser() / "LOGS")


# --- something other than a file at today's log name --------------------------------------------


def _plant(logs: Path, kind: str, days: list[str]) -> Path:
    """Put a ``kind`` at the log file names of ``days`` in ``logs/LOGS``; return the link target."""
    folder = logs / "LOGS"
    folder.mkdir(parents=True, exist_ok=True)
    target = logs / "precious"
    target.write_text("data")
    for day in days:
        path = folder / f"LOG-{day}.txt"
        if kind == "fifo":
            os.mkfifo(path)  # nobody reads it: a blocking open for writing would wait forever
        elif kind == "folder":
            path.mkdir()
        else:
            path.symlink_to(target)
    return target


HOSTILE = {"fifo": "a FIFO", "folder": "a folder", "symlink": "a symbolic link"}


def _warning(logs: Path, day: str, kind: str) -> str:
    return (
        f"synchro: warning: cannot write the log in {logs}/LOGS: LOG-{day}.txt is {HOSTILE[kind]}, "
        "not a regular file; the run goes on without it\n"
    )


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_fifo_folder_or_symlink_at_todays_log_name_is_one_warning_command(
    pair: Pair, kind: str, no_hang: None
) -> None:
    """The command finishes with its normal exit code, warns once, follows no link."""
    build(pair.src, {f"f{index}": "x" for index in range(600)})  # more than one batch of lines
    # Today's and tomorrow's names: the run may start after midnight.
    days = [f"{datetime.now() + timedelta(days=offset):%Y-%m-%d}" for offset in (0, 1)]
    target = _plant(pair.logs, kind, days)

    result = run_synchro(pair.src, pair.rep, "1", pair.logs, "--once", "-q")

    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr in {_warning(pair.logs, day, kind) for day in days}
    assert len(os.listdir(pair.rep)) == 600
    assert target.read_text() == "data"
    planted = [os.lstat(pair.logs / "LOGS" / f"LOG-{day}.txt").st_mode for day in days]
    kinds = {"fifo": stat.S_ISFIFO, "folder": stat.S_ISDIR, "symlink": stat.S_ISLNK}
    assert all(kinds[kind](mode) for mode in planted)  # left as they were


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_fifo_folder_or_symlink_at_todays_log_name_is_one_warning_api(
    pair: Pair, kind: str, capsys: pytest.CaptureFixture[str], no_hang: None
) -> None:
    write(pair.src / "f", "data")
    target = _plant(pair.logs, kind, ["2026-03-01"])
    clock = Clock(datetime(2026, 3, 1, 12, 0))

    report = synchro.mirror(pair.src, pair.rep, logpath=pair.logs, clock=clock)
    with Synchro(pair.logs, quiet=True, clock=clock) as api:  # the ongoing face: every cycle
        api.configure(pair.src, pair.rep)
        second = api.run()

    assert (report.exit_code, report.added) == (0, ["f"])
    assert second.exit_code == 0
    assert capsys.readouterr().err == 2 * _warning(pair.logs, "2026-03-01", kind)  # one per log object
    assert target.read_text() == "data"


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_fifo_folder_or_symlink_at_todays_log_name_is_one_warning_tasks(
    tmp_path: Path, kind: str, no_hang: None
) -> None:
    tree(tmp_path / "docs", {"a.txt": "alpha"})
    ini(tmp_path / "backups.ini", "[docs]\nsource = docs\nreplica = mirror\ncreate_replica = yes\n")
    target = _plant(tmp_path, kind, ["2026-03-01"])

    result = Inv(tmp_path)(
        "backup", "--pair", "docs", "-q", now=datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    )

    assert result.returncode == 0
    assert result.stderr == _warning(tmp_path, "2026-03-01", kind)
    assert files_of(tmp_path / "mirror") == {"a.txt": "alpha"}
    assert target.read_text() == "data"
