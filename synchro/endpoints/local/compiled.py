"""The compiled loops (``_scan``, ``_copy``): used only when built from the C source beside them.

Both are optional: the install compiles them when it can, and otherwise
``scan.py`` and ``filecopy.py`` run the same steps in Python. A module left
from an earlier build must not run beside newer Python code: a checkout
updated without a rebuild keeps its old module, and so does a rebuild that
found no compiler. So each module carries the SHA-256 of the C file it was
compiled from (setup.py gives it to the compiler), and :func:`load` returns
it only when that is the SHA-256 of the C file shipped beside it (the
package ships both). The source, not the version number, decides: a C file
changed between two releases, or in a working copy, is caught as well.

Example::

    module, state = load("_scan")   # (the module, "in use") or (None, why not)
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from types import ModuleType

NAMES = ("_scan", "_copy")
# What each one does, as ``synchro --version`` names it.
ROLES = {"_scan": "scan", "_copy": "copy"}

IN_USE = "in use"
NOT_BUILT = "not built, the same steps run in Python"
STALE = "stale, not used: built from another version of the C source (reinstall to rebuild)"
NO_SOURCE = "not used: no C source beside it to check it against"

_PACKAGE = __name__.rpartition(".")[0]
_FOLDER = os.path.dirname(os.path.abspath(__file__))


def load(name: str) -> tuple[ModuleType | None, str]:
    """The compiled module ``name`` and "in use", or None and why it is not used."""
    try:
        module = import_module(f"{_PACKAGE}.{name}")
    except ModuleNotFoundError:  # not built (also: None in sys.modules, as the tests do)
        return None, NOT_BUILT
    except ImportError as error:  # built, but not for this interpreter or system
        return None, f"not loadable: {error}"
    source = _source_sha256(name)
    if source is None:
        return None, NO_SOURCE
    if getattr(module, "SOURCE_SHA256", "") != source:
        return None, STALE
    return module, IN_USE


def describe() -> str:
    """One phrase for ``synchro --version``: 'compiled scan and copy: in use', or each its own."""
    states = {name: load(name)[1] for name in NAMES}
    if len(set(states.values())) == 1:
        return f"compiled {' and '.join(ROLES[name] for name in NAMES)}: {states[NAMES[0]]}"
    return "; ".join(f"compiled {ROLES[name]}: {state}" for name, state in states.items())


def _source_sha256(name: str) -> str | None:
    try:
        with open(os.path.join(_FOLDER, f"{name}.c"), "rb") as source:
            data = source.read()
    except OSError:
        return None
    return _sha256_hex(data)


def _sha256_hex(data: bytes) -> str:
    # CPython's own SHA-256 module where there is one: hashlib loads OpenSSL,
    # about 5 ms of every start of the command, for some 20 kB to hash.
    try:
        builtin = import_module("_sha2" if sys.version_info >= (3, 12) else "_sha256")
    except ImportError:
        import hashlib

        return hashlib.sha256(data).hexdigest()
    return str(builtin.sha256(data).hexdigest())
