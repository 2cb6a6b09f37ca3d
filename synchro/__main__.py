"""``python -m synchro``: the same as the ``synchro`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
