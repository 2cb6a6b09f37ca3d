"""``python -m synchro``: the same as the ``synchro`` command."""

from __future__ import annotations

from .faces.cli import command

command()
