"""What pyproject.toml cannot say: the two optional compiled loops, and where builds happen.

``synchro.endpoints.local._scan`` (``_scan.c``: list a folder) and
``synchro.endpoints.local._copy`` (``_copy.c``: copy a small file), in
synchro/endpoints/local/, are built when a C compiler and the Python
headers are at hand; without them the build goes on and synchro does the
same in Python (``scan.py``, ``filecopy.py`` beside them), only slower.

Each module is compiled with the SHA-256 of its C file
(``-DSYNCHRO_SOURCE_SHA256="..."``), and synchro uses it only when that is
the SHA-256 of the C file shipped beside it
(synchro/endpoints/local/compiled.py): a module left from an older source is
never run with newer Python code.

Builds happen in a temporary folder, not in ``build/`` of the checkout: a
``build/`` left there by one install was copied into the next one, so an
install that could not compile shipped the previous install's modules.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
HERE = Path(__file__).resolve().parent
COMPILED = HERE / "synchro" / "endpoints" / "local"

# One per run of this file (pip runs it once per build step, each in a
# process of its own); removed when that process ends. A --build-base given
# on the command line still wins, as for any option of a setup.cfg.
build_base = tempfile.mkdtemp(prefix="synchro-build-")
atexit.register(shutil.rmtree, build_base, ignore_errors=True)


def extension(name: str) -> Extension:
    source = COMPILED / f"{name}.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return Extension(
        f"synchro.endpoints.local.{name}",
        sources=[source.relative_to(HERE).as_posix()],
        define_macros=[("SYNCHRO_SOURCE_SHA256", f'"{digest}"')],
        extra_compile_args=FLAGS,
        optional=True,
    )


setup(
    # POSIX C (descriptors, copy_file_range): Windows uses the portable endpoint, in Python.
    ext_modules=[] if os.name == "nt" else [extension(name) for name in ("_scan", "_copy")],
    options={"build": {"build_base": build_base}, "egg_info": {"egg_base": build_base}},
)
