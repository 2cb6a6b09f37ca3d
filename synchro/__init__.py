"""synchro: one-way folder backups that are safe to run every day.

A *source* folder is mirrored into a *replica* folder: new and changed files
are copied, removed ones deleted, recursively; every run is written to a
daily log ``LOGS/LOG-YYYY-MM-DD.txt``. See :class:`Synchro` and :func:`mirror`.
"""

from __future__ import annotations

from .errors import ConfigError, ExitCode, ReplicaLocked, SynchroError
from .faces.api import Pair, Synchro, mirror
from .pipeline.engine import Hooks
from .pipeline.report import Report

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ExitCode",
    "Hooks",
    "Pair",
    "ReplicaLocked",
    "Report",
    "Synchro",
    "SynchroError",
    "__version__",
    "mirror",
]
