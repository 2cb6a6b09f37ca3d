"""The POSIX open flags this endpoint uses, 0 where the system lacks one.

Windows has no ``O_DIRECTORY``, ``O_NOFOLLOW``, ``O_CLOEXEC`` or
``O_NONBLOCK``: it never uses this endpoint (see
:mod:`synchro.endpoints.resolve`), but the modules that name them must
still import there, since every face reaches them.
"""

from __future__ import annotations

import os

O_DIRECTORY: int = getattr(os, "O_DIRECTORY", 0)
O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
# Windows only: no translation of line ends, no inheritance by child processes.
O_BINARY: int = getattr(os, "O_BINARY", 0)
O_NOINHERIT: int = getattr(os, "O_NOINHERIT", 0)
