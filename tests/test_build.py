"""The install builds the two compiled modules wherever it can.

They are optional (without a C compiler the install goes on, and the same
steps run in Python), so their own tests skip when they are missing; this
one does not, so that a machine with a compiler where the build silently
failed is noticed rather than quietly slower.
"""

from __future__ import annotations

import importlib
import shutil
import sysconfig
from pathlib import Path

import pytest

import synchro.endpoints.local.filecopy
import synchro.endpoints.local.scan


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
