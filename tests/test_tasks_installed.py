"""The tasks after a plain ``pip install``: ``synchro-tasks`` from any folder.

``pip install .`` does not ship the ``tasks.py`` of a clone, so the tasks
live in the package and the install brings a command over them. This
installs a copy of the project (not editable, as a user would) into a fresh
virtual environment, once per test session, and runs the command from a
folder that holds no ``tasks.py`` and with nothing of the clone on the path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What a build must not pick up from the working folder.
NOT_COPIED = shutil.ignore_patterns(
    ".venv",
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.so",
    "LOGS",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ``bin`` folder of a fresh virtual environment where the project is pip-installed."""
    root = tmp_path_factory.mktemp("installed")
    shutil.copytree(REPO, root / "project", ignore=NOT_COPIED)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(root / "project")],
        capture_output=True,
        text=True,
        timeout=600,
        env=_clean_env(),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Not editable: the project's copy can go, the install must stand alone.
    shutil.rmtree(root / "project")
    yield venv / "bin"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SYNCHRO_", "INVOKE_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(PYTHONIOENCODING="utf-8", **extra)
    return env


def run(bin_folder: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_folder / "synchro-tasks"), *args],
        cwd=cwd,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("alpha", encoding="utf-8")
    (tmp_path / "docs" / "sub" / "b.txt").write_text("beta", encoding="utf-8")
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "backups.ini"
    path.write_text(
        "[DEFAULT]\ncreate_replica = yes\n\n[docs]\nsource = ../docs\nreplica = ../mirror\n", encoding="utf-8"
    )
    return path


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder with no tasks.py, where `inv` would find no collection."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_the_installed_command_is_the_installed_package(installed: Path, elsewhere: Path) -> None:
    result = subprocess.run(
        [str(installed / "python"), "-c", "import synchro.faces.tasks as t; print(t.__file__)"],
        cwd=elsewhere,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "site-packages" in result.stdout
    assert not result.stdout.startswith(str(REPO))
    inv = subprocess.run(
        [str(installed / "inv"), "--list"], cwd=elsewhere, env=_clean_env(), capture_output=True, text=True
    )
    assert "Can't find any collection named 'tasks'!" in inv.stderr  # why synchro-tasks exists


@pytest.mark.parametrize("flag", ["--list", "-l"])
def test_list(installed: Path, elsewhere: Path, flag: str) -> None:
    result = run(installed, flag, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    # Each task's line starts with two spaces and its name; wrapped summaries start further in.
    names = [line.split()[0] for line in result.stdout.splitlines() if re.match(r"  \S", line)]
    assert names == ["backup", "backup-all", "pairs", "restore", "status", "verify", "versions", "watch"]


def test_help_of_a_task(installed: Path, elsewhere: Path) -> None:
    result = run(installed, "--help", "watch", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: synchro-tasks [--core-opts] watch [--options]")
    assert "  -i HOURS, --interval=HOURS " in result.stdout
    assert "  --ini=FILE " in result.stdout


def test_backup_and_status_over_an_ini_from_another_folder(
    installed: Path, tmp_path: Path, pairs_file: Path, elsewhere: Path
) -> None:
    result = run(installed, "backup", "--pair", "docs", "--ini", str(pairs_file), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("docs: ok: 3 added, ")
    assert (tmp_path / "mirror" / "sub" / "b.txt").read_text(encoding="utf-8") == "beta"
    assert (tmp_path / "conf" / "LOGS" / "status.json").is_file()
    assert list(elsewhere.iterdir()) == []

    (tmp_path / "docs" / "a.txt").unlink()
    result = run(installed, "backup-all", "-q", cwd=elsewhere, SYNCHRO_CONFIG=str(pairs_file))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not (tmp_path / "mirror" / "a.txt").exists()

    result = run(installed, "status", "--json", "--ini", str(pairs_file), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert (row["pair"], row["stale"], row["last_run"]["counts"]["deleted"]) == ("docs", False, 1)


def test_usage_errors_exit_2(installed: Path, pairs_file: Path, elsewhere: Path) -> None:
    result = run(installed, "backup", "-p", "docs", "--ini", str(pairs_file), "--bogus", cwd=elsewhere)
    assert (result.returncode, result.stderr) == (
        2,
        "synchro: error: No idea what '--bogus' is! (see synchro-tasks --help)\n",
    )
    result = run(installed, "--config", str(pairs_file), "backup-all", cwd=elsewhere)
    assert result.returncode == 2
    assert result.stderr.startswith("synchro: error: --config is Invoke's own option, ")
    result = run(installed, "backup-all", cwd=elsewhere)
    assert (result.returncode, result.stderr) == (
        2,
        f"synchro: error: config file not found: backups.ini in {elsewhere} "
        "(give --ini FILE or set SYNCHRO_CONFIG)\n",
    )
