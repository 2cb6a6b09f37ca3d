"""The Python API (README: "The Python API"): Synchro and mirror().

Ongoing mode never waits: the clock is moved with time-machine (``schedule``
reads ``datetime.datetime.now()``) and the injected ``sleep`` shifts it.
"""

from __future__ import annotations

import io
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from conftest import Pair
from treeutil import BASE_NS, assert_mirror, build, log_lines, log_messages, summary, write

import synchro
from synchro import ConfigError, Hooks, Report, Synchro
from synchro.pipeline.plan import Action, Op

START = datetime(2026, 5, 4, 3, 0, 0)


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds} s: nothing should wait here")


# --- configure and run ----------------------------------------------------------------------


def test_configure_run_close(pair: Pair) -> None:
    write(pair.src / "f", "data")
    api = Synchro(pair.logs, quiet=True)

    configured = api.configure(pair.src, pair.rep)
    report = api.run()
    api.close_api()
    api.close_api()  # harmless

    assert (configured.ongoing, configured.interval, configured.max_cycles) == (False, 24, None)
    assert isinstance(report, Report)
    assert (report.ok, report.exit_code, report.added, report.bytes_copied) == (True, 0, ["f"], 4)
    assert report.counts["added"] == 1
    assert report.seconds >= 0
    assert log_messages(pair.logs) == [
        f"START source={pair.src} replica={pair.rep} mode=single",
        "ADDED f",
        summary(added=1, nbytes=4),
    ]
    # Closed is not dead: the object can still run (the log is opened per batch).
    write(pair.src / "g", "more")
    assert api.run().added == ["g"]
    api.close_api()
    assert log_messages(pair.logs)[-2] == "ADDED g"


def test_the_context_manager_writes_pending_lines(pair: Pair) -> None:
    with Synchro(pair.logs, quiet=True) as api:
        api.configure(pair.src, pair.rep, "o", interval=0.1)
    # Nothing was run: the warning was only pending, and __exit__ wrote it.
    assert log_messages(pair.logs) == ["WARNING interval 0.1 h is below the minimum; raised to 0.25 h"]


def test_an_exclude_pattern_with_a_comma_and_space_is_warned_about(pair: Pair) -> None:
    write(pair.src / "a.tmp", "t")
    synchro.mirror(pair.src, pair.rep, logpath=pair.logs, exclude="*.tmp, *.bak")
    assert (pair.rep / "a.tmp").exists()  # the pattern left nothing out
    warnings = [line for line in log_messages(pair.logs) if line.startswith("WARNING ")]
    assert warnings == [
        "WARNING exclude pattern '*.tmp, *.bak' holds ', ' so it is one pattern, which leaves out only "
        "names with that comma; give one pattern per line in the INI file (exclude = then each indented "
        "on its own line), one --exclude per pattern, or a list in Python"
    ]
    console = io.StringIO()
    with Synchro(pair.logs, console=console) as s:
        s.configure(pair.src, pair.rep, exclude="*.tmp, *.bak")
        assert " WARNING exclude pattern '*.tmp, *.bak' holds ', '" in console.getvalue()
        s.configure(pair.src, pair.rep, exclude=["*.tmp", "*.bak"])
        s.run()
    assert console.getvalue().count("WARNING") == 1


def test_run_before_configure_is_a_config_error(pair: Pair) -> None:
    with Synchro(pair.logs, quiet=True) as api, pytest.raises(ConfigError, match="call configure"):
        api.run()


@pytest.mark.parametrize(
    ("source", "replica", "message"),
    [
        pytest.param("missing", "rep", "source folder does not exist: {root}/missing", id="missing-source"),
        pytest.param(
            "src",
            "missing",
            "replica folder does not exist: {root}/missing (is the backup drive "
            "mounted? create_replica / --create-replica creates it)",
            id="missing-replica",
        ),
        pytest.param("src", "src", "source and replica are the same folder: {root}/src", id="same"),
    ],
)
def test_a_bad_pair_raises_config_error_logs_it_and_the_object_stays_usable(
    pair: Pair, capsys: pytest.CaptureFixture[str], source: str, replica: str, message: str
) -> None:
    write(pair.src / "f", "data")
    expected = message.format(root=pair.root)

    with Synchro(pair.logs) as api:
        with pytest.raises(ConfigError) as raised:
            api.configure(pair.root / source, pair.root / replica)
        assert isinstance(raised.value, ValueError)
        assert str(raised.value) == expected
        assert capsys.readouterr().out == ""  # the caller shows it; the console stays clean
        assert log_messages(pair.logs) == [f"ERROR {expected}"]

        api.configure(pair.src, pair.rep)
        assert api.run().added == ["f"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"chekcsum": True}, "unknown option 'chekcsum'", id="unknown-option"),
        pytest.param(
            {"max_delete": "lots"}, "max_delete: expected a number N or a percentage P%", id="max-delete"
        ),
        pytest.param({"modify_window": -1}, "modify_window: expected a number of seconds >= 0", id="window"),
        pytest.param({"checksum": "maybe"}, "checksum: expected yes or no", id="bool"),
        pytest.param(
            {"interval": "often"}, "interval: expected a number of hours, got 'often'", id="interval"
        ),
        pytest.param({"exclude": ["ok", "!"]}, "exclude: invalid pattern: ", id="bad-pattern"),
        pytest.param({"exclude": "[z-a]"}, "exclude: invalid pattern: ", id="bad-character-range"),
    ],
)
def test_bad_options_raise_config_error(pair: Pair, options: dict[str, Any], message: str) -> None:
    with Synchro(pair.logs, quiet=True) as api, pytest.raises(ConfigError, match=message):
        api.configure(pair.src, pair.rep, **options)
    assert log_messages(pair.logs)[0].startswith(f"ERROR {message}")


def test_options_are_the_commands_as_keywords(pair: Pair) -> None:
    build(pair.src, {"a.tmp": "t", "b.log": "l", "c.txt": "c"}, mtime_ns=BASE_NS)

    with Synchro(pair.logs, quiet=True) as api:
        configured = api.configure(
            pair.src, pair.rep, exclude="*.tmp\n*.log\n", max_delete="10", modify_window="2", checksum="yes"
        )
        report = api.run()

    assert configured.options.exclude == ("*.tmp", "*.log")
    assert (configured.options.max_delete.files, configured.options.modify_window) == (10, 2.0)
    assert configured.options.checksum is True
    assert report.added == ["c.txt"]


# --- modes, interval, max ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "ongoing"),
    [("s", False), ("S", False), ("o", True), ("O", True), ("x", False), ("", False), ("oo", False)],
    ids=["s", "S", "o", "O", "other-letter", "empty", "two-letters"],
)
def test_mode_letters(pair: Pair, mode: str, ongoing: bool) -> None:
    with Synchro(pair.logs, quiet=True, sleep=no_sleep) as api:
        assert api.configure(pair.src, pair.rep, mode, max=1).ongoing is ongoing
        api.run()

    messages = log_messages(pair.logs)
    if ongoing:
        assert messages[:2] == [
            "ONGOING every 24 h, 1 cycles",
            f"START source={pair.src} replica={pair.rep} mode=ongoing",
        ]
    else:
        assert messages[0] == f"START source={pair.src} replica={pair.rep} mode=single"
    assert len([m for m in messages if m.startswith("START ")]) == 1


@pytest.mark.parametrize("interval", [0.1, 0, -2], ids=["0.1", "0", "negative"])
def test_a_short_interval_is_raised_to_a_quarter_hour_with_a_warning(pair: Pair, interval: float) -> None:
    slept: list[float] = []
    with time_machine.travel(START, tick=True) as traveller:

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            traveller.shift(seconds)

        with Synchro(pair.logs, quiet=True, sleep=sleep) as api:
            assert api.configure(pair.src, pair.rep, "O", interval=interval, max=3).interval == 0.25
            api.run()

    assert (
        log_messages(pair.logs)[0]
        == f"WARNING interval {interval:g} h is below the minimum; raised to 0.25 h"
    )
    assert sum(slept) == pytest.approx(2 * 900, abs=2)


@pytest.mark.parametrize(
    ("max_value", "cycles"),
    [
        pytest.param(1, 1, id="1"),
        pytest.param(3, 3, id="3"),
        pytest.param(2.1, 3, id="2.1-rounds-up"),
        pytest.param(2.0, 2, id="2.0"),
        pytest.param(0.5, 1, id="0.5-rounds-up"),
        pytest.param("2", 2, id="text-number"),
    ],
)
def test_max_cycles_then_stop_without_waiting(pair: Pair, max_value: Any, cycles: int) -> None:
    slept: list[float] = []
    with time_machine.travel(START, tick=True) as traveller:

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            traveller.shift(seconds)

        with Synchro(pair.logs, quiet=True, sleep=sleep) as api:
            assert api.configure(pair.src, pair.rep, "o", interval=4, max=max_value).max_cycles == cycles
            api.run()

    starts = [line for line in log_messages(pair.logs) if line.startswith("START ")]
    assert len(starts) == cycles
    assert sum(slept) == pytest.approx((cycles - 1) * 4 * 3600, abs=2)  # no wait after the last


def test_cycles_run_every_interval_hours(pair: Pair) -> None:
    with (
        time_machine.travel(START, tick=True) as traveller,
        Synchro(pair.logs, quiet=True, sleep=lambda seconds: traveller.shift(seconds)) as api,
    ):
        api.configure(pair.src, pair.rep, "o", interval=4, max=3)
        api.run()

    starts = [line[:19] for line in log_lines(pair.logs) if " START " in line]
    assert starts == ["2026-05-04 03:00:00", "2026-05-04 07:00:00", "2026-05-04 11:00:00"]


@pytest.mark.parametrize(
    "max_value",
    [None, 0, -1, -2.5, "forever", float("nan"), float("inf")],
    ids=["None", "0", "-1", "-2.5", "text", "nan", "inf"],
)
def test_max_none_zero_negative_or_not_a_number_means_forever(pair: Pair, max_value: Any) -> None:
    with time_machine.travel(START, tick=True) as traveller:
        sleeps = 0

        def sleep(seconds: float) -> None:
            nonlocal sleeps
            sleeps += 1
            if sleeps == 5:  # the user gives up waiting
                raise KeyboardInterrupt
            traveller.shift(seconds)

        with Synchro(pair.logs, quiet=True, sleep=sleep) as api:
            assert api.configure(pair.src, pair.rep, "o", interval=1, max=max_value).max_cycles is None
            with pytest.raises(KeyboardInterrupt):
                api.run()

    messages = log_messages(pair.logs)
    assert messages[0] == "ONGOING every 1 h, until stopped"
    assert len([m for m in messages if m.startswith("START ")]) == 5


def test_ongoing_mode_returns_the_last_cycles_report(pair: Pair) -> None:
    write(pair.src / "first", "1")
    with time_machine.travel(START, tick=True) as traveller:
        cycle = 0

        def sleep(seconds: float) -> None:
            nonlocal cycle
            cycle += 1
            write(pair.src / f"added-after-{cycle}", "x")
            traveller.shift(seconds)

        with Synchro(pair.logs, quiet=True, sleep=sleep) as api:
            api.configure(pair.src, pair.rep, "o", interval=2, max=3)
            report = api.run()

    assert report.added == ["added-after-2"]
    assert report.untouched_count == 2
    assert api.last_report is report
    assert_mirror(pair.src, pair.rep)


# --- Ctrl+C -------------------------------------------------------------------------------------


def test_ctrl_c_while_waiting_is_logged_and_raised_again(pair: Pair) -> None:
    def sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    api = Synchro(pair.logs, quiet=True, sleep=sleep)
    api.configure(pair.src, pair.rep, "o", interval=1)
    with pytest.raises(KeyboardInterrupt):
        api.run()

    # Logged and written without close_api: the script that stops here loses nothing.
    messages = log_messages(pair.logs)
    assert messages[-1] == "INTERRUPTED ongoing mode stopped by Ctrl+C"
    assert messages[-2] == summary()


def test_ctrl_c_during_a_cycle_leaves_no_partial_file(pair: Pair) -> None:
    build(pair.src, {"a": "1", "b": "2", "c": "3"})
    copies = 0

    def before_action(action: Action) -> None:
        nonlocal copies
        if action.op is Op.COPY:
            copies += 1
            if copies == 2:
                raise KeyboardInterrupt

    api = Synchro(pair.logs, quiet=True, sleep=no_sleep, hooks=Hooks(before_action=before_action))
    api.configure(pair.src, pair.rep, "o", interval=1)
    with pytest.raises(KeyboardInterrupt):
        api.run()

    messages = log_messages(pair.logs)
    assert messages[-3:] == [
        "INTERRUPTED the run was stopped by Ctrl+C; the replica holds no partial file",
        summary(added=1, nbytes=1, code=130),
        "INTERRUPTED ongoing mode stopped by Ctrl+C",
    ]
    assert len(os.listdir(pair.rep)) == 1  # one complete file, no temporary


def test_ctrl_c_in_single_mode_is_raised_with_exit_130_in_the_log(pair: Pair) -> None:
    write(pair.src / "f", "1")

    def interrupt(action: Action) -> None:
        raise KeyboardInterrupt

    api = Synchro(pair.logs, quiet=True, hooks=Hooks(before_action=interrupt))
    api.configure(pair.src, pair.rep)
    with pytest.raises(KeyboardInterrupt):
        api.run()

    assert log_messages(pair.logs)[-1] == summary(code=130)


def test_a_locked_replica_skips_the_cycle_in_ongoing_mode(pair: Pair) -> None:
    write(pair.src / "f", "1")
    reports: list[Report] = []

    def run_ongoing_while_locked(action: Action) -> None:
        if reports:
            return
        with time_machine.travel(START, tick=True) as traveller:
            inner = Synchro(pair.root / "inner", quiet=True, sleep=lambda seconds: traveller.shift(seconds))
            inner.configure(pair.src, pair.rep, "o", interval=1, max=2)
            reports.append(inner.run())
            inner.close_api()

    synchro.mirror(pair.src, pair.rep, hooks=Hooks(before_action=run_ongoing_while_locked))

    assert reports[0].exit_code == 4
    message = f"replica {pair.rep} is locked by another synchro run; try again later"
    inner_messages = log_messages(pair.root / "inner")
    assert [m for m in inner_messages if m.startswith("LOCKED")] == [f"LOCKED {message}"] * 2
    assert [m for m in inner_messages if m.startswith("SUMMARY")] == [summary(code=4)] * 2


# --- several pairs, and mirror() --------------------------------------------------------------


def test_several_pairs_in_one_script_share_one_log(tmp_path: Path) -> None:
    pairs = []
    for name in ("photos", "documents", "projects"):
        source, replica = tmp_path / name, tmp_path / f"{name}-backup"
        source.mkdir()
        replica.mkdir()
        write(source / f"{name}.txt", name)
        pairs.append((source, replica))

    with Synchro(tmp_path, quiet=True) as api:
        for source, replica in pairs:
            api.configure(source, replica)
            api.run()

    messages = log_messages(tmp_path)
    assert [m for m in messages if m.startswith(("START", "ADDED"))] == [
        line
        for (source, replica), name in zip(pairs, ("photos", "documents", "projects"), strict=True)
        for line in (f"START source={source} replica={replica} mode=single", f"ADDED {name}.txt")
    ]
    assert len(list((tmp_path / "LOGS").glob("LOG-*.txt"))) == 1


def test_mirror_without_logpath_writes_no_log_and_prints_nothing(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(pair.src / "f", "data")
    monkeypatch.chdir(pair.root)

    report = synchro.mirror(pair.src, pair.rep, checksum=True)

    assert report.added == ["f"]
    assert not (pair.root / "LOGS").exists()
    assert capsys.readouterr() == ("", "")


def test_mirror_with_logpath_and_console(pair: Pair) -> None:
    write(pair.src / "f", "data")
    console = io.StringIO()

    report = synchro.mirror(pair.src, pair.rep, logpath=pair.logs, console=console, verbose=True)

    assert report.exit_code == 0
    assert [line[20:] for line in console.getvalue().splitlines()][1] == "ADDED f"
    assert log_messages(pair.logs)[1] == "ADDED f"


def test_mirror_reports_a_bad_pair_and_raises_on_bad_options(pair: Pair) -> None:
    report = synchro.mirror(pair.root / "missing", pair.rep)
    assert (report.exit_code, report.ok) == (2, False)
    assert report.message == f"source folder does not exist: {pair.root}/missing"

    with pytest.raises(ConfigError, match="unknown option 'bogus'"):
        synchro.mirror(pair.src, pair.rep, bogus=1)
