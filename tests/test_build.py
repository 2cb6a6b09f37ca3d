"""The install builds the two compiled modules wherever it can, and says which it uses.

They are optional (without a C compiler the install goes on, and the same
steps run in Python), so their own tests skip when they are missing; the
first test here does not, so that a machine with a compiler where the build
silently failed is noticed rather than quietly slower. The others install
copies of this checkout with pip, with and without a compiler, and hold
``synchro --version`` to what is really used: a module built from another
version of its C source is never used, and no install leaves a ``build/``
folder behind for the next one to ship.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import synchro
import synchro.endpoints.local.filecopy
import synchro.endpoints.local.scan
from synchro.endpoints.local import compiled


def can_compile() -> bool:
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return headers.exists() and any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))


@pytest.mark.skipif(not can_compile(), reason="no C compiler or Python headers here: the Python loops run")
@pytest.mark.parametrize("module", ["synchro.endpoints.local._scan", "synchro.endpoints.local._copy"])
def test_the_compiled_modules_are_built_and_used(module: str) -> None:
    built = importlib.import_module(module)
    used = {
        "synchro.endpoints.local._scan": synchro.endpoints.local.scan.list_entries,
        "synchro.endpoints.local._copy": synchro.endpoints.local.filecopy._copy_small,
    }
    assert used[module] is getattr(built, "list_entries" if module.endswith("scan") else "copy_small")


# What an install leaves and what synchro --version says of it. The copies
# below are installed with pip into a target folder and run from there, so
# that the package under test is the installed one, not this checkout.

REPO = Path(__file__).resolve().parent.parent
VERSION = synchro.__version__
# What a checkout holds besides its files: this venv, caches, the outputs
# of runs and of earlier builds (the compiled modules in place are kept:
# an earlier editable install leaves them there).
NOT_IN_A_CHECKOUT = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "LOGS",
    "replica",
)


def version_line(command: list[str], pythonpath: Path | None, cwd: Path) -> str:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run(
        [*command, "--version"], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def checkout_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "checkout"
    shutil.copytree(REPO, copy, ignore=NOT_IN_A_CHECKOUT, symlinks=True)
    return copy


def pip_install(checkout: Path, target: Path, **env: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(checkout)],
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env},
        check=True,
        capture_output=True,
    )


def mirror_with(command: list[str], pythonpath: Path, tmp_path: Path) -> None:
    source, replica = tmp_path / "source", tmp_path / "replica"
    (source / "folder").mkdir(parents=True)
    for i in range(20):
        (source / "folder" / f"file{i}.txt").write_bytes(b"x" * i)
    done = subprocess.run(
        [*command, str(source), str(replica), "1", str(tmp_path), "--once", "--create-replica", "-q"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(pythonpath)},
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert sorted(p.name for p in (replica / "folder").iterdir()) == sorted(f"file{i}.txt" for i in range(20))
    assert [(replica / "folder" / f"file{i}.txt").read_bytes() for i in range(20)] == [
        b"x" * i for i in range(20)
    ]


@pytest.mark.skipif(not can_compile(), reason="no C compiler or Python headers here: the Python loops run")
def test_the_version_says_the_compiled_modules_are_in_use(tmp_path: Path) -> None:
    command = [str(Path(sys.executable).with_name("synchro"))]
    assert version_line(command, None, tmp_path) == f"synchro {VERSION} (compiled scan and copy: in use)\n"


@pytest.mark.skipif(
    compiled.load("_scan")[0] is None or compiled.load("_copy")[0] is None,
    reason="the compiled modules are not built here",
)
def test_a_module_built_from_another_source_is_stale_and_never_used(tmp_path: Path) -> None:
    # A checkout updated (git pull) without a rebuild: the compiled scan
    # beside a _scan.c that has changed since it was built.
    copy = checkout_copy(tmp_path)
    with (copy / "synchro" / "endpoints" / "local" / "_scan.c").open("a") as source:
        source.write("/* a change since the module was built */\n")
    command = [sys.executable, "-m", "synchro"]
    assert version_line(command, copy, tmp_path) == (
        f"synchro {VERSION} (compiled scan: {compiled.STALE}; compiled copy: in use)\n"
    )
    probe = "import synchro.endpoints.local.scan as s; print(s.list_entries is s.python_list_entries)"
    used = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(copy)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert used.stdout == "True\n"
    mirror_with(command, copy, tmp_path)


@pytest.mark.parametrize(
    ("compiler", "expected"),
    [
        pytest.param(
            {},
            "compiled scan and copy: in use",
            marks=pytest.mark.skipif(not can_compile(), reason="no C compiler or Python headers here"),
            id="with a compiler",
        ),
        pytest.param(
            {"CC": "false"}, f"compiled scan and copy: {compiled.NOT_BUILT}", id="without a compiler"
        ),
    ],
)
def test_pip_install_leaves_no_build_folder_and_the_version_says_what_was_built(
    compiler: dict[str, str], expected: str, tmp_path: Path
) -> None:
    # The checkout holds compiled modules of an earlier build (an editable
    # install puts them in place) and a C source changed since: an install
    # that cannot compile must not ship or use them.
    copy = checkout_copy(tmp_path)
    with (copy / "synchro" / "endpoints" / "local" / "_scan.c").open("a") as source:
        source.write("/* a change since the module was built */\n")
    target = tmp_path / "installed"
    pip_install(copy, target, **compiler)
    left = sorted(p.name for p in copy.iterdir() if p.name == "build" or p.name.endswith(".egg-info"))
    assert left == []
    command = [str(target / "bin" / "synchro")]
    assert version_line(command, target, tmp_path) == f"synchro {VERSION} ({expected})\n"
    mirror_with(command, target, tmp_path)


def test_every_package_of_the_project_is_installed() -> None:
    """A plain ``pip install`` ships only the packages pyproject.toml names."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    root = Path(synchro.__file__).resolve().parent.parent
    named = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(root).parts) for init in (root / "synchro").rglob("__init__.py")
    }
    assert named == found
