"""The synchro tasks, for ``inv`` in a clone of the repository: ``inv --list``.

The collection lives in the package (:mod:`synchro.faces.tasks`); after a
plain ``pip install``, the same tasks run from any folder as
``synchro-tasks``. Invoke has read its own options before it imports this
file: one that was meant for synchro (``--config x.ini``, ``-c x.ini``,
``--dry``) is refused here with one line, instead of Invoke's traceback or
a run that ignores it.
"""

from __future__ import annotations

from invoke.main import program

from synchro.faces.taskargs import refuse_misused_invoke_options
from synchro.faces.tasks import namespace as ns

__all__ = ["ns"]

# Invoke's own program: its argv is empty unless `inv` is what runs.
refuse_misused_invoke_options(program.argv[1:])
